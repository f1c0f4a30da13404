package lab

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
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	Register(Scenario{
		Name: "replicas", Section: "Part 2, mistake 2",
		Description: "an in-process mutex guarding a balance, one vs two server processes, vs two Holdfast servers on one database",
		Run:         runReplicas,
	})
}

// NaiveWallet is the service of the seed's mistake 2: POST
// /transfer?from=&to=&amount= moves money between race_wallets under the
// process's own mutex (Wallets.GlobalMutex), which is perfectly safe while
// there is one process. It answers 200 when it moved the money, 422 when
// the wallet holds too little.
type NaiveWallet struct{ Wallets *Wallets }

func (n *NaiveWallet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := strconv.Atoi(q.Get("from"))
	to, err2 := strconv.Atoi(q.Get("to"))
	amount, err3 := strconv.ParseInt(q.Get("amount"), 10, 64)
	if r.Method != http.MethodPost || err1 != nil || err2 != nil || err3 != nil || amount <= 0 || from == to {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	moved, _, err := n.Wallets.GlobalMutex(r.Context(), from, to, amount)
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case !moved:
		http.Error(w, "insufficient funds", http.StatusUnprocessableEntity)
	}
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
	srv := &http.Server{Handler: &NaiveWallet{Wallets: &Wallets{Pool: pool}}, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Fprintf(stdout, "listening http://%s\n", ln.Addr())
	io.Copy(io.Discard, stdin) // until the parent closes it, or dies
	return nil
}

// ReplicaRun is one deployment's outcome.
type ReplicaRun struct {
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

func runReplicas(ctx context.Context, env *Env) (*Report, error) {
	wallets := 4
	balance := int64(1_000)
	workers := pick(env.Scale, 8, 32, 64)
	perWorker := pick(env.Scale, 40, 150, 500)
	url, db, err := env.OpenDB(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	version := serverVersion(ctx, db.Pool)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	initial := int64(wallets) * balance

	var runs []ReplicaRun
	for _, servers := range []int{1, 2} {
		w, err := CreateWallets(ctx, db.Pool, wallets, balance)
		if err != nil {
			return nil, err
		}
		var urls []string
		for range servers {
			h, err := startHelper(ctx, env, "wallet", url)
			if err != nil {
				return nil, err
			}
			defer h.stop()
			urls = append(urls, h.URL)
		}
		name := fmt.Sprintf("naive, in-process mutex, %d process", servers)
		if servers > 1 {
			name += "es"
		}
		env.progressf("replicas: %s, %d clients × %d transfers", name, workers, perWorker)
		moved, refused, errs := replicaLoad(workers, perWorker, wallets, func(s, from, to int, amount, _ int64) (int, error) {
			return post(ctx, client, fmt.Sprintf("%s/transfer?from=%d&to=%d&amount=%d", urls[s], from, to, amount), "", nil)
		}, servers)
		total, negative, err := w.Totals(ctx)
		if err != nil {
			return nil, err
		}
		runs = append(runs, ReplicaRun{Name: name, Servers: servers, Requests: int64(workers * perWorker),
			Moved: moved, Refused: refused, Errors: errs, MoneyDelta: total - initial, Negative: negative})
	}

	// Holdfast: two servers, each with its own pool and group-commit writer,
	// on the one database.
	tenant, key, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab replicas"}, nil)
	if err != nil {
		return nil, err
	}
	ids, err := SeedAccounts(ctx, db.Pool, tenant.ID, "USD", wallets, balance, false)
	if err != nil {
		return nil, err
	}
	var urls []string
	for range 2 {
		u, err := env.Serve(ctx, url, ServeOptions{})
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	env.progressf("replicas: Holdfast, 2 servers on one database, %d clients × %d transfers", workers, perWorker)
	moved, refused, errs := replicaLoad(workers, perWorker, wallets, func(s, from, to int, amount, seq int64) (int, error) {
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, ids[from-1], ids[to-1], amount)
		return post(ctx, client, urls[s]+"/v1/transfers", key.Secret, body, "Idempotency-Key", "replicas-"+strconv.FormatInt(seq, 10))
	}, 2)
	hf := ReplicaRun{Name: "Holdfast, 2 servers, one database", Servers: 2, Requests: int64(workers * perWorker), Moved: moved, Refused: refused, Errors: errs}
	var total int64
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(sum(balance), 0), count(*) FILTER (WHERE balance < 0) FROM accounts WHERE id = ANY($1::uuid[])",
		postgres.UUIDArray(ids)).Scan(&total, &hf.Negative); err != nil {
		return nil, err
	}
	hf.MoneyDelta = total - initial
	if err := postgres.VerifyLedger(ctx, db, tenant.ID); err != nil {
		return nil, err
	}
	made := int64(0)
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description <> 'funding'", tenant.ID).Scan(&made); err != nil {
		return nil, err
	}
	if made != hf.Moved {
		return nil, fmt.Errorf("replicas: Holdfast acknowledged %d transfers and stored %d", hf.Moved, made)
	}
	runs = append(runs, hf)

	r := &Report{
		Claim: `A service has perfect in-memory locking. It scales to two replicas. The locks now do nothing — they only
protect within one process. For state shared across machines, you need a coordination layer: a database
transaction, a Redis lock, an idempotency key, or a queue with single-consumer semantics.`,
		Measured: fmt.Sprintf(`A naive wallet service (lab.NaiveWallet: read both balances, check, write both, under a
sync.Mutex) guards %d balances in PostgreSQL. It runs as separate OS processes — this binary re-executing
itself as a hidden helper — because the point is that a mutex lives in one process's memory; two goroutines of
one process would share it (or, with one mutex each, only imitate two processes). %d clients send %d transfers
each, to one process, then alternating between two. Then the same load alternates between two Holdfast
servers (each its own pool and group-commit writer; they share nothing but the database, so whether they are
processes or not changes nothing for them) and the ledger is audited; every acknowledged transfer must be
stored once.`, wallets, workers, perWorker),
		Columns:    []string{"deployment", "requests", "moved", "refused", "errors", "money delta", "negative balances", "correct"},
		Data:       runs,
		PostgreSQL: version,
		Chart:      &Chart{Title: "Money created or destroyed by lost updates (absolute)", YLabel: "|final total − initial total|"},
	}
	for _, run := range runs {
		ok := run.MoneyDelta == 0 && run.Negative == 0 // errors (a shed request) lose no money
		r.Rows = append(r.Rows, []string{run.Name, fmt.Sprint(run.Requests), fmt.Sprint(run.Moved), fmt.Sprint(run.Refused),
			fmt.Sprint(run.Errors), fmt.Sprintf("%+d", run.MoneyDelta), fmt.Sprint(run.Negative), yesNo(ok)})
		group := "Holdfast"
		if run.Servers == 1 || run.Name[0] == 'n' {
			group = "naive"
		}
		r.Chart.Bars = append(r.Chart.Bars, Bar{Label: run.Name, Value: float64(abs(run.MoneyDelta)), Group: group, Note: fmt.Sprintf("%+d", run.MoneyDelta)})
	}
	r.Findings = []string{
		fmt.Sprintf("one naive process: money %+d (the mutex works); two: %+d after %d acknowledged transfers", runs[0].MoneyDelta, runs[1].MoneyDelta, runs[1].Moved),
		fmt.Sprintf("two Holdfast servers: money %+d, %d acknowledged = %d stored, ledger audited", hf.MoneyDelta, hf.Moved, made),
	}
	return r, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
