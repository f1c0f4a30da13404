package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	register(Scenario{
		Name: "double-charge", Section: "Part 2, Stripe",
		Description: "a client that times out and retries, without and with an Idempotency-Key; concurrent duplicates",
		Run:         runDoubleCharge,
	})
}

// lossyNetwork sits between a client and a server and loses the response
// of every first attempt: it forwards the request (the server does the
// work, whatever happens to the client), then holds the answer until the
// client gives up. A client marks its attempts with the header
// Lab-Attempt: 1, 2, …; the server never sees it.
type lossyNetwork struct {
	Upstream string // base URL
	Client   *http.Client
	lost     atomic.Int64
}

func (n *lossyNetwork) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, n.Upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	attempt := req.Header.Get("Lab-Attempt")
	req.Header.Del("Lab-Attempt")
	resp, err := n.Client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if attempt == "1" {
		n.lost.Add(1)
		select { // lost on the way back: the client times out
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// chargeRun is what a retrying client did to charges.
type chargeRun struct {
	Name           string `json:"name"`
	Charges        int    `json:"charges"`         // the client meant to charge this many times
	Attempts       int64  `json:"attempts"`        // requests sent
	Succeeded      int64  `json:"succeeded"`       // charges the client saw succeed
	Replayed       int64  `json:"replayed"`        // answers with Idempotent-Replayed: true
	Stored         int64  `json:"stored"`          // transfers in the database
	ChargedTwice   int64  `json:"charged_twice"`   // charges stored more than once
	AmountExpected int64  `json:"amount_expected"` // what the customer should have paid
	AmountCharged  int64  `json:"amount_charged"`
}

// retryingCharge sends one charge (a transfer of amount from customer to
// merchant, described "desc") up to 3 times, each attempt under timeout,
// with the Idempotency-Key key if it is not empty: the client of the seed's
// Stripe section, naive when it has no key.
func retryingCharge(ctx context.Context, client *http.Client, base, apiKey, key, customer, merchant, desc string, amount int64, timeout time.Duration) (attempts int, ok, replayed bool) {
	body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD","description":%q}`, customer, merchant, amount, desc)
	for attempts < 3 {
		attempts++
		actx, cancel := context.WithTimeout(ctx, timeout)
		req, _ := http.NewRequestWithContext(actx, "POST", base+"/v1/transfers", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Lab-Attempt", strconv.Itoa(attempts))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err == nil && resp.StatusCode == http.StatusCreated {
			return attempts, true, resp.Header.Get("Idempotent-Replayed") == "true"
		}
	}
	return attempts, false, false
}

// duplicateRound is one burst of identical requests with one key.
type duplicateRound struct {
	Route    string      `json:"route"`
	Sent     int         `json:"sent"`
	Statuses map[int]int `json:"statuses"`
	Created  int64       `json:"created"` // rows the burst created
}

// doubleCharge is what the scenario measured.
type doubleCharge struct {
	Runs       []chargeRun      `json:"runs"`
	Duplicates []duplicateRound `json:"duplicates"`
	LostByNet  int64            `json:"responses_lost"`
}

// doubleChargeConfig sizes the scenario.
type doubleChargeConfig struct {
	Charges    int           // per client
	Timeout    time.Duration // the client's, per attempt
	Rounds     int           // bursts of duplicates per route
	Duplicates int           // identical requests per burst
}

// measureDoubleCharge runs the scenario against the Holdfast at base, whose
// database db is, and audits the ledger after.
func measureDoubleCharge(ctx context.Context, db *postgres.DB, base string, cfg doubleChargeConfig, progress func(string, ...any)) (*doubleCharge, error) {
	tenant, key, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab double-charge"}, nil)
	if err != nil {
		return nil, err
	}
	ids, err := bench.SeedAccounts(ctx, db.Pool, tenant.ID, "USD", 2, 1_000_000_000, false)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	r := &doubleChargeRun{db: db, base: base, cfg: cfg, tenant: tenant.ID, key: key.Secret, customer: ids[0], merchant: ids[1],
		client: client, run: time.Now().UnixNano()}
	lossy := &lossyNetwork{Upstream: base, Client: client}
	lossyURL, stop, err := bench.ServeLoopback(lossy)
	if err != nil {
		return nil, err
	}
	defer stop()

	out := &doubleCharge{}
	for _, keyed := range []bool{false, true} {
		cr, err := r.charges(ctx, lossyURL, keyed, progress)
		if err != nil {
			return nil, err
		}
		out.Runs = append(out.Runs, cr)
	}
	out.LostByNet = lossy.lost.Load()

	// Concurrent duplicates, straight to Holdfast: a burst of identical
	// requests with one key.
	progress("double-charge: %d bursts of %d identical requests with one key, transfers and accounts", cfg.Rounds, cfg.Duplicates)
	routes := []duplicateRoute{
		{"POST /v1/transfers", fmt.Sprintf(`{"debit_account_id":%q,"credit_account_id":%q,"amount":100,"currency":"USD","description":"dup"}`, r.customer, r.merchant),
			"SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description = 'dup'"},
		{"POST /v1/accounts", `{"currency":"USD"}`, "SELECT count(*) FROM accounts WHERE tenant_id = $1"},
	}
	for _, rt := range routes {
		for round := range cfg.Rounds {
			d, err := r.duplicates(ctx, rt, round)
			if err != nil {
				return nil, err
			}
			out.Duplicates = append(out.Duplicates, d)
		}
	}
	return out, postgres.VerifyLedger(ctx, db, tenant.ID)
}

// doubleChargeRun is one measureDoubleCharge: its tenant, whose key pays,
// the two accounts and the client.
type doubleChargeRun struct {
	db                 *postgres.DB
	base               string
	cfg                doubleChargeConfig
	tenant, key        string
	customer, merchant string
	client             *http.Client
	run                int64 // sets this run's descriptions and keys apart
}

// charges makes every charge through the lossy network at lossyURL, each
// retried by its client, with one Idempotency-Key per charge if keyed, and
// counts what the database stored.
func (r *doubleChargeRun) charges(ctx context.Context, lossyURL string, keyed bool, progress func(string, ...any)) (chargeRun, error) {
	cfg := r.cfg
	name := "naive: retry without Idempotency-Key"
	if keyed {
		name = "retry with Idempotency-Key"
	}
	progress("double-charge: %s, %d charges, first response of each lost, client timeout %v", name, cfg.Charges, cfg.Timeout)
	cr := chargeRun{Name: name, Charges: cfg.Charges}
	var attempts, succeeded, replayed atomic.Int64
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range cfg.Charges {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			desc := fmt.Sprintf("charge %d-%t-%d", r.run, keyed, i)
			k := ""
			if keyed {
				k = fmt.Sprintf("charge-%d-%d", r.run, i)
			}
			n, ok, rep := retryingCharge(ctx, r.client, lossyURL, r.key, k, r.customer, r.merchant, desc, 100, cfg.Timeout)
			attempts.Add(int64(n))
			if ok {
				succeeded.Add(1)
			}
			if rep {
				replayed.Add(1)
			}
		})
	}
	wg.Wait()
	cr.Attempts, cr.Succeeded, cr.Replayed = attempts.Load(), succeeded.Load(), replayed.Load()
	cr.AmountExpected = int64(cfg.Charges) * 100
	like := fmt.Sprintf("charge %d-%t-%%", r.run, keyed)
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE n > 1), coalesce(sum(amount), 0) FROM
		(SELECT description, count(*) AS n, sum(amount) AS amount FROM transfers WHERE tenant_id = $1 AND description LIKE $2 GROUP BY description) d`,
		r.tenant, like).Scan(new(int64), &cr.ChargedTwice, &cr.AmountCharged); err != nil {
		return cr, err
	}
	err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description LIKE $2`, r.tenant, like).Scan(&cr.Stored)
	return cr, err
}

// duplicateRoute is a route that gets bursts of identical requests: its
// body, and the query that counts the rows it creates.
type duplicateRoute struct {
	route, body, table string
}

// duplicates sends a burst of identical requests with one key to the
// route, all at once, and counts their statuses and the rows they made.
func (r *doubleChargeRun) duplicates(ctx context.Context, rt duplicateRoute, round int) (duplicateRound, error) {
	var before int64
	if err := r.db.Pool.QueryRow(ctx, rt.table, r.tenant).Scan(&before); err != nil {
		return duplicateRound{}, err
	}
	d := duplicateRound{Route: rt.route, Sent: r.cfg.Duplicates, Statuses: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	idem := fmt.Sprintf("dup-%d-%s-%d", r.run, rt.route[len("POST /v1/"):], round)
	start := make(chan struct{})
	for range r.cfg.Duplicates {
		wg.Go(func() {
			<-start
			status, err := post(ctx, r.client, r.base+rt.route[len("POST "):], r.key, []byte(rt.body), "Idempotency-Key", idem)
			if err != nil {
				status = -1
			}
			mu.Lock()
			d.Statuses[status]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	var after int64
	if err := r.db.Pool.QueryRow(ctx, rt.table, r.tenant).Scan(&after); err != nil {
		return duplicateRound{}, err
	}
	d.Created = after - before
	return d, nil
}

// DuplicateTotals sums the bursts of a route: requests by status and rows
// created, and how many bursts created exactly one row.
func (d *doubleCharge) DuplicateTotals(route string) (statuses map[int]int, created int64, exactlyOnce, rounds int) {
	statuses = map[int]int{}
	for _, r := range d.Duplicates {
		if r.Route != route {
			continue
		}
		rounds++
		created += r.Created
		if r.Created == 1 {
			exactlyOnce++
		}
		for s, n := range r.Statuses {
			statuses[s] += n
		}
	}
	return statuses, created, exactlyOnce, rounds
}

func formatStatuses(m map[int]int) string {
	var keys []int
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if k == -1 {
			fmt.Fprintf(&b, "%d transport errors", m[k])
		} else {
			fmt.Fprintf(&b, "%d × %d", m[k], k)
		}
	}
	return b.String()
}

func runDoubleCharge(ctx context.Context, env *Env) (*report.Report, error) {
	cfg := doubleChargeConfig{
		Charges: pick(env.Scale, 10, 100, 1_000), Timeout: pick(env.Scale, 500*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond),
		Rounds: pick(env.Scale, 3, 20, 100), Duplicates: 10,
	}
	url, db, err := env.OpenDB(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	base, err := env.Serve(ctx, url, ServeOptions{})
	if err != nil {
		return nil, err
	}
	res, err := measureDoubleCharge(ctx, db, base, cfg, env.progressf)
	if err != nil {
		return nil, err
	}
	if len(res.Runs) != 2 {
		return nil, errors.New("double-charge: missing runs")
	}
	r := &report.Report{
		Claim: `Before executing anything, the server checks: have I seen this key before? First time — insert a row, run
the charge, store the result, mark complete. Duplicate — return the stored result, never touch the payment
processor. […] if the first request is still in-flight when the retry arrives, the server returns a 409
Conflict and the client backs off.`,
		Measured: fmt.Sprintf(`A client charges a customer %d times (POST /v1/transfers of 100), through a network that loses
the response of every first attempt (a lossy network in the harness: the request reaches Holdfast and commits; the answer
never comes back). The client gives up after %v and retries, up to 3 attempts: first without an
Idempotency-Key (the naive client), then with one key per charge. Then, straight to Holdfast, %d bursts of %d
identical requests sent at once with one key, on POST /v1/transfers and on POST /v1/accounts.`,
			cfg.Charges, cfg.Timeout, cfg.Rounds, cfg.Duplicates),
		Columns:    []string{"client", "charges meant", "attempts", "seen to succeed", "replayed", "transfers stored", "charged twice", "amount expected", "amount charged"},
		Data:       res,
		PostgreSQL: serverVersion(ctx, db.Pool),
		Chart:      &report.Chart{Title: fmt.Sprintf("%d charges, every first response lost: transfers stored", cfg.Charges), YLabel: "transfers stored"},
	}
	for i, cr := range res.Runs {
		r.Rows = append(r.Rows, []string{cr.Name, fmt.Sprint(cr.Charges), fmt.Sprint(cr.Attempts), fmt.Sprint(cr.Succeeded), fmt.Sprint(cr.Replayed),
			fmt.Sprint(cr.Stored), fmt.Sprint(cr.ChargedTwice), fmt.Sprint(cr.AmountExpected), fmt.Sprint(cr.AmountCharged)})
		group := "naive"
		if i > 0 {
			group = "Holdfast"
		}
		r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: cr.Name, Value: float64(cr.Stored), Group: group, Note: fmt.Sprintf("%d stored for %d charges", cr.Stored, cr.Charges)})
	}
	r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: "what was meant", Value: float64(cfg.Charges), Group: "meant"})
	ts, tc, tOnce, tRounds := res.DuplicateTotals("POST /v1/transfers")
	as, ac, aOnce, aRounds := res.DuplicateTotals("POST /v1/accounts")
	naive, keyed := res.Runs[0], res.Runs[1]
	r.Findings = []string{
		fmt.Sprintf("without a key: %d charges became %d transfers (%d charged twice, %d instead of %d); with a key: %d transfers, %d retries answered by replay",
			naive.Charges, naive.Stored, naive.ChargedTwice, naive.AmountCharged, naive.AmountExpected, keyed.Stored, keyed.Replayed),
		fmt.Sprintf("bursts on POST /v1/accounts (key claimed up front): %s; %d/%d bursts created exactly one account (%d in all) — the seed's 409 for a request still in flight",
			formatStatuses(as), aOnce, aRounds, ac),
		fmt.Sprintf("bursts on POST /v1/transfers: %s; %d/%d bursts created exactly one transfer (%d in all). A documented deviation (docs/decisions/0003-transfer-keys-claimed-inside-the-batch.md): a transfer's duplicate waits for the batch committing the first and gets its response replayed, rather than a 409",
			formatStatuses(ts), tOnce, tRounds, tc),
	}
	return r, nil
}
