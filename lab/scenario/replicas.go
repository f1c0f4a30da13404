package scenario

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	register(Scenario{
		Name: "replicas", Section: "Part 2, mistake 2",
		Description: "an in-process mutex guarding a balance, one vs two server processes, vs two Holdfast servers on one database",
		Run:         runReplicas,
	})
}

// walletHelper serves a NaiveWallet on the database until stdin closes.
func walletHelper(ctx context.Context, url string, stdin io.Reader, stdout io.Writer) error {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &naive.WalletServer{Wallets: &naive.Wallets{Pool: pool}}, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Fprintf(stdout, "listening http://%s\n", ln.Addr())
	io.Copy(io.Discard, stdin) // until the parent closes it, or dies
	return nil
}

// replicaRun is one deployment's outcome.
type replicaRun struct {
	Name       string `json:"name"`
	Servers    int    `json:"servers"`
	Requests   int64  `json:"requests"`
	Moved      int64  `json:"moved"` // acknowledged
	Refused    int64  `json:"refused"`
	Errors     int64  `json:"errors"`
	MoneyDelta int64  `json:"money_delta"` // final total − initial: lost updates
	Negative   int    `json:"negative_balances"`
}

// replicaLoad sends workers × perWorker transfers, request i to
// servers[i % len(servers)], with send.
func replicaLoad(workers, perWorker, wallets int, send func(server, from, to int, amount int64, seq int64) (status int, err error), servers int) (moved, refused, errs int64) {
	var m, r, e atomic.Int64
	var seq atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWorker {
				n := seq.Add(1)
				from := 1 + rng.IntN(wallets)
				to := 1 + (from+rng.IntN(wallets-1))%wallets
				status, err := send(int(n)%servers, from, to, int64(1+rng.IntN(100)), n)
				switch {
				case err != nil || status >= 500:
					e.Add(1)
				case status < 300:
					m.Add(1)
				default:
					r.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return m.Load(), r.Load(), e.Load()
}

func post(ctx context.Context, client *http.Client, url, key string, body []byte, headers ...string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func runReplicas(ctx context.Context, env *Env) (*report.Report, error) {
	workers := pick(env.Scale, 8, 32, 64)
	r := &replicas{env: env, wallets: 4, balance: 1_000, workers: workers, perWorker: pick(env.Scale, 40, 150, 500)}
	var err error
	r.url, r.db, err = env.OpenDB(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer r.db.Close()
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: time.Minute}
	defer r.client.CloseIdleConnections()

	var runs []replicaRun
	for _, servers := range []int{1, 2} {
		run, err := r.naiveProcesses(ctx, servers)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	hf, made, err := r.holdfastServers(ctx)
	if err != nil {
		return nil, err
	}
	return r.report(append(runs, hf), made, serverVersion(ctx, r.db.Pool)), nil
}

// replicas is one run of the replicas scenario: its database, its wallets
// and its load.
type replicas struct {
	env                *Env
	url                string
	db                 *postgres.DB
	client             *http.Client
	wallets            int
	balance            int64
	workers, perWorker int
}

func (r *replicas) initial() int64 { return int64(r.wallets) * r.balance }

// naiveProcesses runs the load against servers naive wallet processes
// (helpers) on fresh wallets and counts the money after.
func (r *replicas) naiveProcesses(ctx context.Context, servers int) (replicaRun, error) {
	w, err := naive.CreateWallets(ctx, r.db.Pool, r.wallets, r.balance)
	if err != nil {
		return replicaRun{}, err
	}
	var urls []string
	for range servers {
		h, err := startHelper(ctx, r.env, "wallet", r.url)
		if err != nil {
			return replicaRun{}, err
		}
		defer h.stop()
		urls = append(urls, h.URL)
	}
	name := fmt.Sprintf("naive, in-process mutex, %d process", servers)
	if servers > 1 {
		name += "es"
	}
	r.env.progressf("replicas: %s, %d clients × %d transfers", name, r.workers, r.perWorker)
	moved, refused, errs := replicaLoad(r.workers, r.perWorker, r.wallets, func(s, from, to int, amount, _ int64) (int, error) {
		return post(ctx, r.client, fmt.Sprintf("%s/transfer?from=%d&to=%d&amount=%d", urls[s], from, to, amount), "", nil)
	}, servers)
	total, negative, err := w.Totals(ctx)
	if err != nil {
		return replicaRun{}, err
	}
	return replicaRun{Name: name, Servers: servers, Requests: int64(r.workers * r.perWorker),
		Moved: moved, Refused: refused, Errors: errs, MoneyDelta: total - r.initial(), Negative: negative}, nil
}

// holdfastServers runs the load against two Holdfast servers, each with
// its own pool and group-commit writer, on the one database; it audits the
// ledger and returns the run and the transfers stored, which must be those
// acknowledged.
func (r *replicas) holdfastServers(ctx context.Context) (replicaRun, int64, error) {
	tenant, key, err := postgres.NewTenantService(r.db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab replicas"}, nil)
	if err != nil {
		return replicaRun{}, 0, err
	}
	ids, err := bench.SeedAccounts(ctx, r.db.Pool, tenant.ID, "USD", r.wallets, r.balance, false)
	if err != nil {
		return replicaRun{}, 0, err
	}
	var urls []string
	for range 2 {
		u, err := r.env.Serve(ctx, r.url, ServeOptions{})
		if err != nil {
			return replicaRun{}, 0, err
		}
		urls = append(urls, u)
	}
	r.env.progressf("replicas: Holdfast, 2 servers on one database, %d clients × %d transfers", r.workers, r.perWorker)
	moved, refused, errs := replicaLoad(r.workers, r.perWorker, r.wallets, func(s, from, to int, amount, seq int64) (int, error) {
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, ids[from-1], ids[to-1], amount)
		return post(ctx, r.client, urls[s]+"/v1/transfers", key.Secret, body, "Idempotency-Key", "replicas-"+strconv.FormatInt(seq, 10))
	}, 2)
	hf := replicaRun{Name: "Holdfast, 2 servers, one database", Servers: 2, Requests: int64(r.workers * r.perWorker), Moved: moved, Refused: refused, Errors: errs}
	var total int64
	if err := r.db.Pool.QueryRow(ctx, "SELECT coalesce(sum(balance), 0), count(*) FILTER (WHERE balance < 0) FROM accounts WHERE id = ANY($1::uuid[])",
		postgres.UUIDArray(ids)).Scan(&total, &hf.Negative); err != nil {
		return replicaRun{}, 0, err
	}
	hf.MoneyDelta = total - r.initial()
	if err := postgres.VerifyLedger(ctx, r.db, tenant.ID); err != nil {
		return replicaRun{}, 0, err
	}
	made := int64(0)
	if err := r.db.Pool.QueryRow(ctx, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description <> 'funding'", tenant.ID).Scan(&made); err != nil {
		return replicaRun{}, 0, err
	}
	if made != hf.Moved {
		return replicaRun{}, 0, fmt.Errorf("replicas: Holdfast acknowledged %d transfers and stored %d", hf.Moved, made)
	}
	return hf, made, nil
}

// report writes up the runs: the naive processes', then Holdfast's.
func (r *replicas) report(runs []replicaRun, made int64, version string) *report.Report {
	hf := runs[len(runs)-1]
	rep := &report.Report{
		Claim: `A service has perfect in-memory locking. It scales to two replicas. The locks now do nothing — they only
protect within one process. For state shared across machines, you need a coordination layer: a database
transaction, a Redis lock, an idempotency key, or a queue with single-consumer semantics.`,
		Measured: fmt.Sprintf(`A naive wallet service (naive.WalletServer: read both balances, check, write both, under a
sync.Mutex) guards %d balances in PostgreSQL. It runs as separate OS processes — this binary re-executing
itself as a hidden helper — because the point is that a mutex lives in one process's memory; two goroutines of
one process would share it (or, with one mutex each, only imitate two processes). %d clients send %d transfers
each, to one process, then alternating between two. Then the same load alternates between two Holdfast
servers (each its own pool and group-commit writer; they share nothing but the database, so whether they are
processes or not changes nothing for them) and the ledger is audited; every acknowledged transfer must be
stored once.`, r.wallets, r.workers, r.perWorker),
		Columns:    []string{"deployment", "requests", "moved", "refused", "errors", "money delta", "negative balances", "correct"},
		Data:       runs,
		PostgreSQL: version,
		Chart:      &report.Chart{Title: "Money created or destroyed by lost updates (absolute)", YLabel: "|final total − initial total|"},
	}
	for _, run := range runs {
		ok := run.MoneyDelta == 0 && run.Negative == 0 // errors (a shed request) lose no money
		rep.Rows = append(rep.Rows, []string{run.Name, fmt.Sprint(run.Requests), fmt.Sprint(run.Moved), fmt.Sprint(run.Refused),
			fmt.Sprint(run.Errors), fmt.Sprintf("%+d", run.MoneyDelta), fmt.Sprint(run.Negative), yesNo(ok)})
		group := "Holdfast"
		if run.Servers == 1 || run.Name[0] == 'n' {
			group = "naive"
		}
		rep.Chart.Bars = append(rep.Chart.Bars, report.Bar{Label: run.Name, Value: float64(abs(run.MoneyDelta)), Group: group, Note: fmt.Sprintf("%+d", run.MoneyDelta)})
	}
	rep.Findings = []string{
		fmt.Sprintf("one naive process: money %+d (the mutex works); two: %+d after %d acknowledged transfers", runs[0].MoneyDelta, runs[1].MoneyDelta, runs[1].Moved),
		fmt.Sprintf("two Holdfast servers: money %+d, %d acknowledged = %d stored, ledger audited", hf.MoneyDelta, hf.Moved, made),
	}
	return rep
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
