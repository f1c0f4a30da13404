package app_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestMain_EndToEnd(t *testing.T) {
	t.Parallel()
	m := apptest.MustStart(t, pgtest.NewDatabase(t))
	c := apptest.Admin(m).MustTenant(t, "e2e")
	house := c.MustAccount(t, "EUR", true)
	alice := c.MustAccount(t, "EUR", false)
	c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 250, "EUR")).MustStatus(t, 201)
	if got := c.Balance(t, alice); got != 250 {
		t.Fatalf("balance = %d, want 250", got)
	}
	anon := &apitest.Client{URL: m.HTTP.URL()}
	anon.Do(t, "GET", "/readyz", nil).MustStatus(t, 200)
	anon.Do(t, "GET", "/openapi.json", nil).MustStatus(t, 200)
	metrics := string(anon.Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body)
	for _, want := range []string{
		`holdfast_http_requests_total{method="POST",route="POST /v1/transfers",status="201"} 1`,
		`holdfast_http_request_duration_seconds_bucket{method="GET",route="GET /v1/accounts/{id}"`,
		`holdfast_db_pool_conns{state="idle"}`,
		`holdfast_db_pool_max_conns`,
		`holdfast_ledger_batch_size_count`,
		`holdfast_ledger_queue_depth`,
		`holdfast_ledger_queue_wait_seconds_count 1`,
		`holdfast_blob_gc_deleted_total 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A blob grace period shorter than a job's longest processing is refused at
// start: a job's new variants could be swept before its receipt refers to them.
func TestMain_BlobGCGraceTooShort(t *testing.T) {
	t.Parallel()
	err := RunMainErr(t, func(c *app.Config) {
		c.Receipts.GCGrace = 5 * time.Minute // under 10 × the 60 s visibility timeout
	})
	if err == nil || !strings.Contains(err.Error(), "--blob-gc-grace") {
		t.Fatalf("Run = %v, want the grace refused", err)
	}
}

// A key retention under the day the Idempotency-Key rules promise is
// refused at start.
func TestMain_IdempotencyRetentionTooShort(t *testing.T) {
	t.Parallel()
	err := RunMainErr(t, func(c *app.Config) { c.IdempotencyRetention = time.Second })
	if err == nil || !strings.Contains(err.Error(), "--idempotency-retention") {
		t.Fatalf("Run = %v, want the retention refused", err)
	}
}

// RunMainErr runs the program as apptest.MustStart does, closes it, and returns
// Run's error: for configurations that must fail at start.
func RunMainErr(tb testing.TB, configure func(*app.Config)) error {
	tb.Helper()
	m := apptest.New(tb, pgtest.NewDatabase(tb), configure)
	defer m.Stop()
	return m.Start(context.Background())
}

// sharedNATS returns a configuration of replicas on one NATS, as
// --nats-url gives them in production (each embedding its own is refused):
// a nats-server of the test's own, or a skip without one.
func sharedNATS(t *testing.T) func(*app.Config) {
	t.Helper()
	url := natstest.ExternalURL(t)
	if url == natstest.DefaultURL {
		t.Skip("needs a nats-server of its own (the shared one on 4222 may hold other tests' streams)")
	}
	return func(c *app.Config) { c.NATSURL = url }
}

// TestMain_ReplayAfterRestart: a key's stored response outlives the process.
func TestMain_ReplayAfterRestart(t *testing.T) {
	t.Parallel()
	db, dir := pgtest.NewDatabase(t), t.TempDir()
	sameDir := func(c *app.Config) { c.DataDir = dir } // and so the same embedded NATS files
	first := apptest.MustStart(t, db, sameDir)
	c := apptest.Admin(first).MustTenant(t, "restart")
	house := c.MustAccount(t, "USD", true)
	alice := c.MustAccount(t, "USD", false)
	body := apitest.Transfer(house, alice, 99, "USD")
	orig := c.Do(t, "POST", "/v1/transfers", body, "Idempotency-Key", "restart-1").MustStatus(t, 201)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := apptest.MustStart(t, db, sameDir)
	c.URL = second.HTTP.URL()
	replay := c.Do(t, "POST", "/v1/transfers", body, "Idempotency-Key", "restart-1").MustStatus(t, 201)
	if replay.Header.Get("Idempotent-Replayed") != "true" || string(replay.Body) != string(orig.Body) {
		t.Fatalf("after restart: replayed=%q body %s, want the original %s", replay.Header.Get("Idempotent-Replayed"), replay.Body, orig.Body)
	}
	if got := c.Balance(t, alice); got != 99 {
		t.Fatalf("balance = %d, want 99 (applied once)", got)
	}
}

// TestBankInvariant_HTTP is the bank test through the real program: 50
// clients make 20,000 random transfers among 20 accounts, two of them hot,
// some with an Idempotency-Key and retries, some cancelled by the client
// midway. Afterwards no money was made or lost, no balance is negative,
// balances equal their entries, and every 201 a client saw is stored once.
func TestBankInvariant_HTTP(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	runBank(t, db, apptest.MustStart(t, db))
}

// TestBankInvariant_TwoReplicas runs the bank test against two servers
// sharing one database and, as replicas must, one NATS: correctness may not
// rest on anything in-process.
func TestBankInvariant_TwoReplicas(t *testing.T) {
	t.Parallel()
	nats := sharedNATS(t)
	db := pgtest.NewDatabase(t)
	runBank(t, db, apptest.MustStart(t, db, nats), apptest.MustStart(t, db, nats, func(c *app.Config) { c.Migrate = false }))
}

func runBank(t *testing.T, dbURL string, servers ...*app.Main) {
	const clients, perClient, nAccounts, initial = 50, 400, 20, 100_000
	tenant := apptest.Admin(servers[0]).MustTenant(t, "bank")
	house := tenant.MustAccount(t, "USD", true)
	accounts := make([]string, nAccounts)
	for i := range accounts {
		accounts[i] = tenant.MustAccount(t, "USD", false)
		tenant.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, accounts[i], initial, "USD")).MustStatus(t, 201)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(transport.CloseIdleConnections)

	var mu sync.Mutex
	seen := make(map[string]int)
	var ok, refused, cancelled, replayed int
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			c := *tenant
			c.URL = servers[w%len(servers)].HTTP.URL()
			c.HTTP = &http.Client{Transport: transport}
			for i := range perClient {
				from := accounts[rng.IntN(2)] // two hot accounts
				if rng.IntN(3) > 0 {
					from = accounts[rng.IntN(nAccounts)]
				}
				to := accounts[rng.IntN(nAccounts)]
				if from == to {
					to = accounts[(rng.IntN(nAccounts-1)+1+indexOf(accounts, from))%nAccounts]
				}
				body := apitest.Transfer(from, to, int64(1+rng.IntN(5000)), "USD")
				var headers []string
				if rng.IntN(2) == 0 {
					headers = []string{"Idempotency-Key", fmt.Sprintf("bank-%d-%d", w, i)}
				}
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(20) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(3000))*time.Microsecond, cancel)
				}
				r, err := c.Send(ctx, "POST", "/v1/transfers", body, headers...)
				cancel()
				if err != nil && headers != nil {
					// The client gave up; with a key it may retry safely.
					r, err = c.Send(context.Background(), "POST", "/v1/transfers", body, headers...)
					for backoff := time.Millisecond; err == nil && r.Status == http.StatusConflict; backoff = min(2*backoff, 100*time.Millisecond) {
						time.Sleep(backoff)
						r, err = c.Send(context.Background(), "POST", "/v1/transfers", body, headers...)
					}
				}
				// Overload protection or the key's rate limit refused it before
				// doing anything: like a client, back off and retry (safe with or
				// without a key). One key sends all 20,000 transfers, faster than
				// its default 1,000/s per replica on a fast machine.
				for backoff := time.Millisecond; err == nil && (r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable &&
					strings.Contains(string(r.Body), `"type":"https://holdfast.dev/problems/overloaded"`)); backoff = min(2*backoff, 50*time.Millisecond) {
					time.Sleep(backoff)
					r, err = c.Send(context.Background(), "POST", "/v1/transfers", body, headers...)
				}
				mu.Lock()
				switch {
				case err != nil && errors.Is(err, context.Canceled):
					cancelled++
				case err != nil:
					t.Errorf("transfer: %v", err)
				case r.Status == http.StatusCreated:
					ok++
					if r.Header.Get("Idempotent-Replayed") == "true" {
						replayed++
					} else {
						seen[r.JSON(t)["id"].(string)]++
					}
				case r.Status == http.StatusUnprocessableEntity:
					refused++
				case r.Status == http.StatusServiceUnavailable && strings.Contains(string(r.Body), "timeout"):
					cancelled++ // the server saw the client go
				default:
					t.Errorf("transfer: status %d: %s", r.Status, r.Body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d created (%d replays), %d refused for funds, %d cancelled by the client, in %v",
		ok, replayed, refused, cancelled, time.Since(start).Round(time.Millisecond))

	pool := dbtest.MustPool(t, dbURL)
	ctx := context.Background()
	if err := postgres.VerifyLedger(ctx, &postgres.DB{Pool: pool}, tenant.Tenant); err != nil {
		t.Fatal(err)
	}
	var customers int64
	pool.QueryRow(ctx, "SELECT sum(balance)::bigint FROM accounts WHERE tenant_id = $1 AND NOT allow_overdraft", tenant.Tenant).Scan(&customers)
	if customers != nAccounts*initial {
		t.Fatalf("customers hold %d, want %d: money was made or lost", customers, nAccounts*initial)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("transfer %s acknowledged %d times", id, n)
		}
	}
	var stored int
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	pool.QueryRow(ctx, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND id = ANY($2::uuid[])", tenant.Tenant, ids).Scan(&stored)
	if stored != len(seen) {
		t.Fatalf("%d acknowledged transfers, %d of them stored", len(seen), stored)
	}
	if ok < clients*perClient/2 {
		t.Fatalf("only %d of %d transfers succeeded: the test exercised too little", ok, clients*perClient)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestMain_StatsCountWhatRan: Stats reports what the components did, typed:
// two transfers in group commit, their events relayed into the stream and
// applied by both consumer groups, and a transfer shed for its expired
// deadline.
func TestMain_StatsCountWhatRan(t *testing.T) {
	t.Parallel()
	m := apptest.MustStart(t, pgtest.NewDatabase(t))
	before := m.Stats(t.Context())
	c := apptest.Admin(m).MustTenant(t, "stats")
	house := c.MustAccount(t, "EUR", true)
	alice := c.MustAccount(t, "EUR", false)
	for range 2 {
		c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 5, "EUR")).MustStatus(t, 201)
	}
	c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 5, "EUR"), "Request-Timeout", "0").MustStatus(t, 503)
	if err := m.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := m.Stats(t.Context())
	if got := after.Ledger.Requests - before.Ledger.Requests; got != 2 {
		t.Errorf("group commit applied %d requests, want 2", got)
	}
	if after.Ledger.Batches-before.Ledger.Batches < 1 || after.Ledger.BatchSeconds <= before.Ledger.BatchSeconds {
		t.Errorf("ledger stats %+v after %+v: want batches with their time", after.Ledger, before.Ledger)
	}
	// Two accounts created and two transfers posted: four events, each
	// applied by both groups.
	if got := after.Relayed - before.Relayed; got != 4 {
		t.Errorf("relayed %d events, want 4", got)
	}
	if after.StreamSeq <= before.StreamSeq {
		t.Errorf("stream sequence %d, was %d", after.StreamSeq, before.StreamSeq)
	}
	if got := after.ConsumerEvents - before.ConsumerEvents; got != 8 {
		t.Errorf("consumer groups applied %d events, want 8", got)
	}
	if after.Shed["writes/expired"] != 1 {
		t.Errorf("shed %v, want writes/expired 1", after.Shed)
	}
}
