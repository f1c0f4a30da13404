package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// ReceiptsOptions are the settings of `holdfast-lab bench receipts`; its
// flags give their defaults.
type ReceiptsOptions struct {
	DatabaseURL   string        // server to create the databases on; empty: a private cluster
	Rate          float64       // uploads per second during the spike
	Duration      time.Duration // of the spike
	Cap           int           // receipt jobs in flight across the two replicas
	DBConns       int           // database connections of each replica's workers
	MaxDrain      time.Duration // give up waiting for Holdfast's queue after this
	NaiveMaxDrain time.Duration // give up waiting for the naive consumer after this
	Width, Height int           // of the generated images
	SkipNaive     bool          // run Holdfast only
}

// Receipts runs the receipt spike against Holdfast's capped workers in two
// replicas, then (unless o.SkipNaive) against naive.ReceiptWorkers, each on
// a fresh database; it prints them side by side to stdout, progress to
// stderr.
func Receipts(ctx context.Context, o ReceiptsOptions, stdout, stderr io.Writer) error {
	images := make([][]byte, 64)
	for i := range images {
		images[i] = media.Generate(o.Width, o.Height, int64(i))
	}
	holdfastRun, machineLine, err := spikeHoldfast(ctx, o, images, stderr)
	if err != nil {
		return err
	}
	results := []*SpikeResult{holdfastRun}
	if !o.SkipNaive {
		naiveRun, err := spikeNaive(ctx, o, images, stderr)
		if err != nil {
			return err
		}
		results = append(results, naiveRun)
	}
	fmt.Fprintf(stdout, "holdfast-lab bench receipts — %s\n", machineLine)
	fmt.Fprintf(stdout, "spike: %.0f uploads/s (%.0f a minute) for %s, %dx%d JPEGs; Holdfast: 2 replicas, cap %d, %d DB connections each\n\n",
		o.Rate, o.Rate*60, o.Duration, o.Width, o.Height, o.Cap, o.DBConns)
	printSpike(stdout, o.Cap, 2*o.DBConns, results...)
	return nil
}

// Spike runs the receipt spike of Receipts, capped then naive, each on a
// fresh database on serverURL's server (empty: a private cluster), at
// cfg's size, quietly: the lab's spike scenario.
func Spike(ctx context.Context, serverURL string, cfg SpikeConfig) (capped, naive *SpikeResult, err error) {
	o := ReceiptsOptions{DatabaseURL: serverURL, Rate: cfg.Rate, Duration: cfg.Duration, Cap: cfg.Cap, DBConns: cfg.DBConns,
		MaxDrain: cfg.MaxDrain, NaiveMaxDrain: cfg.MaxDrain, Width: 160, Height: 120}
	images := make([][]byte, 16)
	for i := range images {
		images[i] = media.Generate(o.Width, o.Height, int64(i))
	}
	quiet := io.Discard
	if capped, _, err = spikeHoldfast(ctx, o, images, quiet); err != nil {
		return nil, nil, err
	}
	if naive, err = spikeNaive(ctx, o, images, quiet); err != nil {
		return nil, nil, err
	}
	return capped, naive, nil
}

// spikeSetup starts Holdfast for a spike run and makes a tenant with n transfers.
func spikeSetup(ctx context.Context, o ReceiptsOptions, stderr io.Writer, configure func(*app.Config)) (*benchEnv, *spikeUploader, error) {
	// Uploads are not shed (admission off) in either run: both consumers get the same load.
	env, err := startBenchEnv(ctx, o.DatabaseURL, 16, stderr, configure)
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
	n := int(o.Rate*o.Duration.Seconds()) + 1000
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
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return refusalOf(resp)
}

// outcome counts ready and failed receipts.
func outcome(db *postgres.DB) func(ctx context.Context) (int64, int64, error) {
	return func(ctx context.Context) (ready, failed int64, err error) {
		err = db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'failed') FROM receipts`).Scan(&ready, &failed)
		return ready, failed, err
	}
}

// recorded counts receipts stored, whatever their status.
func recorded(db *postgres.DB) func(ctx context.Context) (int64, error) {
	return func(ctx context.Context) (n int64, err error) {
		err = db.Pool.QueryRow(ctx, "SELECT count(*) FROM receipts").Scan(&n)
		return n, err
	}
}

func spikeHoldfast(ctx context.Context, o ReceiptsOptions, images [][]byte, stderr io.Writer) (*SpikeResult, string, error) {
	env, up, err := spikeSetup(ctx, o, stderr, func(c *app.Config) { c.Receipts.Cap, c.Receipts.DBConns = o.Cap, o.DBConns; c.Admission = false })
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
	db2, err := postgres.Open(ctx, postgres.Config{URL: env.dbURL, MaxConns: int32(o.DBConns), AcquireTimeout: -1})
	if err != nil {
		return nil, "", err
	}
	defer db2.Close()
	store2 := postgres.NewReceiptStore(db2)
	// A replica of its own process would have a CPU lane of its own.
	lane2, err := overload.NewLane(overload.LaneConfig{Name: "replica-2"})
	if err != nil {
		return nil, "", err
	}
	w2, err := receipts.NewWorker(nc2.JS, store2, m.ReceiptBlobs(), receipts.WorkerConfig{
		Config: m.Config.Receipts.Pipeline(), Lane: lane2, Logger: m.Logger, Tenants: store2.TenantName, Yield: m.ReceiptIntakeBusy})
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
	target := &spikeTarget{
		Enqueue: up.enqueue,
		Sample: func(ctx context.Context) (int64, int64, int64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, 0, 0, err
			}
			conns := int64(m.ReceiptDB().Pool.Stat().AcquiredConns() + db2.Pool.Stat().AcquiredConns())
			return int64(info.NumAckPending), int64(info.NumPending), conns, nil
		},
		Outcome:  outcome(m.DB),
		Recorded: recorded(m.DB),
		Counters: func() (int64, int64, int64) {
			var retries int64
			m.DB.Pool.QueryRow(context.Background(), "SELECT coalesce(sum(greatest(attempts - 1, 0)), 0) FROM receipts").Scan(&retries)
			return 0, retries, retries // a pool never opens more than its size: nothing to refuse
		},
	}
	fmt.Fprintln(stderr, "Holdfast: capped workers in 2 replicas")
	res, err := runSpike(ctx, "Holdfast (cap)", target, SpikeConfig{Rate: o.Rate, Duration: o.Duration, MaxDrain: o.MaxDrain, Progress: stderr})
	return res, machineLine, err
}

func spikeNaive(ctx context.Context, o ReceiptsOptions, images [][]byte, stderr io.Writer) (*SpikeResult, error) {
	env, up, err := spikeSetup(ctx, o, stderr, func(c *app.Config) { c.Receipts.NoWorkers = true; c.Admission = false })
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
	workers := &naive.ReceiptWorkers{DBURL: env.dbURL, Blobs: m.ReceiptBlobs(), Cons: cons}
	if err := workers.Start(ctx); err != nil {
		return nil, err
	}
	defer workers.Stop()
	target := &spikeTarget{
		Enqueue: up.enqueue,
		Sample: func(ctx context.Context) (int64, int64, int64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, 0, 0, err
			}
			running, conns := workers.Running()
			return running, int64(info.NumPending), conns, nil
		},
		Outcome:  outcome(m.DB),
		Recorded: recorded(m.DB),
		Counters: workers.Counters,
	}
	fmt.Fprintln(stderr, "naive: a goroutine and a connection per message")
	return runSpike(ctx, "naive (unbounded)", target, SpikeConfig{Rate: o.Rate, Duration: o.Duration, MaxDrain: o.NaiveMaxDrain, Progress: stderr})
}
