package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// spikeFlags are the receipt spike's settings.
type spikeFlags struct {
	dbURL         string
	rate          float64
	duration      time.Duration
	cap, conns    int
	maxDrain      time.Duration
	naiveMaxDrain time.Duration
	width, height int
	skipNaive     bool
}

func benchReceipts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast bench receipts", flag.ContinueOnError)
	var f spikeFlags
	fs.StringVar(&f.dbURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's databases on (env DATABASE_URL); empty: a private cluster in a temp dir")
	fs.Float64Var(&f.rate, "rate", 50000.0/60, "uploads per second during the spike (50,000 a minute)")
	fs.DurationVar(&f.duration, "duration", 2*time.Minute, "length of the spike")
	fs.IntVar(&f.cap, "cap", 50, "receipt jobs in flight across the two replicas")
	fs.IntVar(&f.conns, "db-conns", 4, "database connections of each replica's workers")
	fs.DurationVar(&f.maxDrain, "max-drain", 15*time.Minute, "give up waiting for Holdfast's queue after this")
	fs.DurationVar(&f.naiveMaxDrain, "naive-max-drain", 2*time.Minute, "give up waiting for the naive consumer after this")
	fs.IntVar(&f.width, "width", 160, "width of the generated images")
	fs.IntVar(&f.height, "height", 120, "height of the generated images")
	fs.BoolVar(&f.skipNaive, "skip-naive", false, "run Holdfast only")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast bench receipts [flags]

A spike of receipt uploads (50,000 a minute for 2 minutes by default, small
generated JPEGs, each on its own transfer) through PUT /v1/transfers/{id}/receipt,
processed by two worker replicas under a global cap (the work queue's
MaxAckPending), each replica with a small pool of its own; sampled every
100 ms: jobs in flight, worker database connections, queue depth. Then the
same spike against the naive consumer: a goroutine per message, each opening
its own database connection, a refused connection NAKed for immediate
redelivery. Reports max in flight, max connections, refused connections,
errors and retries, lost receipts, drain time, receipts/s and CPU while
draining, side by side.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	images := make([][]byte, 64)
	for i := range images {
		images[i] = media.Generate(f.width, f.height, int64(i))
	}

	holdfastRun, machineLine, err := spikeHoldfast(ctx, f, images, stderr)
	if err != nil {
		return err
	}
	results := []*lab.SpikeResult{holdfastRun}
	if !f.skipNaive {
		naive, err := spikeNaive(ctx, f, images, stderr)
		if err != nil {
			return err
		}
		results = append(results, naive)
	}
	fmt.Fprintf(stdout, "holdfast bench receipts — %s\n", machineLine)
	fmt.Fprintf(stdout, "spike: %.0f uploads/s (%.0f a minute) for %s, %dx%d JPEGs; Holdfast: 2 replicas, cap %d, %d DB connections each\n\n",
		f.rate, f.rate*60, f.duration, f.width, f.height, f.cap, f.conns)
	lab.PrintSpike(stdout, f.cap, 2*f.conns, results...)
	return nil
}

// spikeSetup starts Holdfast for a spike run and makes a tenant with n transfers.
func spikeSetup(ctx context.Context, f spikeFlags, stderr io.Writer, configure func(*app.Config)) (*benchEnv, *spikeUploader, error) {
	// Uploads are not shed (admission off) in either run: both consumers get the same load.
	env, err := startBenchEnv(ctx, f.dbURL, 16, stderr, configure)
	if err != nil {
		return nil, nil, err
	}
	t, k, err := env.tenant(ctx)
	if err != nil {
		env.close()
		return nil, nil, err
	}
	accts := postgres.NewAccountService(env.main.DB)
	a, err := accts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true}, nil)
	if err != nil {
		env.close()
		return nil, nil, err
	}
	b, err := accts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD"}, nil)
	if err != nil {
		env.close()
		return nil, nil, err
	}
	// Transfers to attach receipts to, inserted in bulk: the benchmark
	// measures the receipt pipeline, not the ledger.
	n := int(f.rate*f.duration.Seconds()) + 1000
	rows, _ := env.main.DB.Pool.Query(ctx, `INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		SELECT $1, gen_random_uuid(), $2, $3, 1, 'USD', 'receipt spike', now() FROM generate_series(1, $4) RETURNING id::text`, t.ID, a.ID, b.ID, n)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		env.close()
		return nil, nil, err
	}
	return env, &spikeUploader{url: env.main.HTTP.URL(), key: k.Secret, transfers: ids,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}}, nil
}

// spikeUploader uploads image i to transfer i.
type spikeUploader struct {
	url, key  string
	transfers []string
	images    [][]byte
	client    *http.Client
}

func (u *spikeUploader) enqueue(ctx context.Context, i int) error {
	// Every upload is a different file (JPEG decoders ignore bytes after
	// the end-of-image marker), so each is stored and made durable anew,
	// as real receipts are; their pixels, and so their variants, repeat.
	img := u.images[i%len(u.images)]
	body := append(append(make([]byte, 0, len(img)+24), img...), fmt.Sprintf("spike-%d", i)...)
	req, err := http.NewRequestWithContext(ctx, "PUT", u.url+"/v1/transfers/"+u.transfers[i%len(u.transfers)]+"/receipt",
		bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+u.key)
	req.Header.Set("Content-Type", "image/jpeg")
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("upload: status %d", resp.StatusCode)
	}
	return nil
}

// outcome counts ready and failed receipts.
func outcome(db *postgres.DB) func(ctx context.Context) (int64, int64, error) {
	return func(ctx context.Context) (ready, failed int64, err error) {
		err = db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'failed') FROM receipts`).Scan(&ready, &failed)
		return ready, failed, err
	}
}

func spikeHoldfast(ctx context.Context, f spikeFlags, images [][]byte, stderr io.Writer) (*lab.SpikeResult, string, error) {
	env, up, err := spikeSetup(ctx, f, stderr, func(c *app.Config) { c.Receipts.Cap, c.Receipts.DBConns = f.cap, f.conns; c.Admission = false })
	if err != nil {
		return nil, "", err
	}
	defer env.close()
	up.images = images
	m := env.main
	machineLine := machine(ctx, m.DB.Pool)

	// The second replica: its own NATS connection, its own worker pool, the same blob store.
	nc2, err := m.NATS.Connect(ctx, "holdfast-replica-2")
	if err != nil {
		return nil, "", err
	}
	defer nc2.NC.Close()
	db2, err := postgres.Open(ctx, postgres.Config{URL: env.dbURL, MaxConns: int32(f.conns), AcquireTimeout: -1})
	if err != nil {
		return nil, "", err
	}
	defer db2.Close()
	store2 := postgres.NewReceiptStore(db2)
	w2, err := receipts.NewWorker(nc2.JS, store2, m.ReceiptBlobs(), receipts.WorkerConfig{
		Config: m.Config.Receipts.Pipeline(), Lane: m.Lane, Logger: m.Logger, Tenants: store2.TenantName})
	if err != nil {
		return nil, "", err
	}
	if err := w2.Start(ctx); err != nil {
		return nil, "", err
	}
	defer w2.Stop()

	cons, err := m.NATS.JS.Consumer(ctx, holdfast.JobsStream, receipts.DefaultConsumer)
	if err != nil {
		return nil, "", err
	}
	target := &lab.SpikeTarget{
		Enqueue: up.enqueue,
		Sample: func(ctx context.Context) (int64, int64, int64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, 0, 0, err
			}
			conns := int64(m.ReceiptDB().Pool.Stat().AcquiredConns() + db2.Pool.Stat().AcquiredConns())
			return int64(info.NumAckPending), int64(info.NumPending), conns, nil
		},
		Outcome: outcome(m.DB),
		Counters: func() (int64, int64, int64) {
			var retries int64
			m.DB.Pool.QueryRow(context.Background(), "SELECT coalesce(sum(greatest(attempts - 1, 0)), 0) FROM receipts").Scan(&retries)
			return 0, retries, retries // a pool never opens more than its size: nothing to refuse
		},
	}
	fmt.Fprintln(stderr, "Holdfast: capped workers in 2 replicas")
	res, err := lab.RunSpike(ctx, "Holdfast (cap)", target, lab.SpikeConfig{Rate: f.rate, Duration: f.duration, MaxDrain: f.maxDrain, Progress: stderr})
	return res, machineLine, err
}

func spikeNaive(ctx context.Context, f spikeFlags, images [][]byte, stderr io.Writer) (*lab.SpikeResult, error) {
	env, up, err := spikeSetup(ctx, f, stderr, func(c *app.Config) { c.Receipts.NoWorkers = true; c.Admission = false })
	if err != nil {
		return nil, err
	}
	defer env.close()
	up.images = images
	m := env.main
	// The naive consumer takes the work queue: no cap, no visibility
	// timeout worth the name, no backoff.
	if err := m.NATS.JS.DeleteConsumer(ctx, holdfast.JobsStream, receipts.DefaultConsumer); err != nil {
		return nil, err
	}
	cons, err := m.NATS.JS.CreateOrUpdateConsumer(ctx, holdfast.JobsStream, njs.ConsumerConfig{
		Durable: "naive", FilterSubject: holdfast.ReceiptJobsSubject, AckPolicy: njs.AckExplicitPolicy, MaxAckPending: -1, AckWait: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	naive := &lab.NaiveWorkers{DBURL: env.dbURL, Blobs: m.ReceiptBlobs(), Cons: cons}
	if err := naive.Start(ctx); err != nil {
		return nil, err
	}
	defer naive.Stop()
	target := &lab.SpikeTarget{
		Enqueue: up.enqueue,
		Sample: func(ctx context.Context) (int64, int64, int64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, 0, 0, err
			}
			running, conns := naive.Running()
			return running, int64(info.NumPending), conns, nil
		},
		Outcome:  outcome(m.DB),
		Counters: naive.Counters,
	}
	fmt.Fprintln(stderr, "naive: a goroutine and a connection per message")
	return lab.RunSpike(ctx, "naive (unbounded)", target, lab.SpikeConfig{Rate: f.rate, Duration: f.duration, MaxDrain: f.naiveMaxDrain, Progress: stderr})
}
