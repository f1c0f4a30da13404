package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" { // a scenario's helper process (see testEnv)
		os.Exit(helperMain())
	}
	pgtest.Main(m)
}

// MustOpenDB returns a pool on a fresh, migrated database.
func MustOpenDB(tb testing.TB) *postgres.DB { return dbtest.MustOpenDB(tb) }

// setup returns a fresh, migrated database with a tenant: its id and an
// API key's secret.
func setup(tb testing.TB) (db *postgres.DB, tenant, secret string) {
	tb.Helper()
	db = MustOpenDB(tb)
	t, key, err := postgres.NewTenantService(db).CreateTenant(context.Background(), holdfast.TenantCreate{Name: tb.Name()}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return db, t.ID, key.Secret
}

// MustSeed seeds n accounts of the tenant with funding each.
func MustSeed(tb testing.TB, db *postgres.DB, tenant string, n int, funding int64, overdraft bool) []string {
	tb.Helper()
	ids, err := lab.SeedAccounts(context.Background(), db.Pool, tenant, "USD", n, funding, overdraft)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ids) != n {
		tb.Fatalf("SeedAccounts returned %d ids, want %d", len(ids), n)
	}
	return ids
}

// MustVerify fails tb unless the tenant's ledger holds its invariants.
func MustVerify(tb testing.TB, db *postgres.DB, tenant string) {
	tb.Helper()
	if err := postgres.VerifyLedger(context.Background(), db, tenant); err != nil {
		tb.Fatal(err)
	}
}

// MustCount returns the integer the query yields.
func MustCount(tb testing.TB, db *postgres.DB, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// balance returns an account's balance.
func balance(tb testing.TB, db *postgres.DB, account string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT balance FROM accounts WHERE id = $1", account)
}

// ledgerRows counts the tenant's transfers, entries and idempotency keys.
func ledgerRows(tb testing.TB, db *postgres.DB, tenant string) [3]int64 {
	tb.Helper()
	return [3]int64{
		MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id WHERE a.tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant),
	}
}

// transfersMade counts the tenant's transfers other than the seeding's.
func transfersMade(tb testing.TB, db *postgres.DB, tenant string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description <> 'funding'", tenant)
}

// TestSeedAccounts: every account holds its funding, the equity account
// holds minus the total, and the ledger is consistent at once.
func TestSeedAccounts(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	const n, funding = 5, 1_000
	funded := MustSeed(t, db, tenant, n, funding, false)
	empty := MustSeed(t, db, tenant, 2, 0, true)
	MustVerify(t, db, tenant)
	for _, id := range funded {
		if got := balance(t, db, id); got != funding {
			t.Errorf("account %s: balance %d, want %d", id, got, funding)
		}
	}
	for _, id := range empty {
		if got := balance(t, db, id); got != 0 {
			t.Errorf("unfunded account %s: balance %d, want 0", id, got)
		}
	}
	if got := MustCount(t, db, "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND allow_overdraft AND id = ANY($2::uuid[])", tenant, empty); got != 2 {
		t.Errorf("%d of the 2 accounts seeded with overdraft allow it", got)
	}
	if got := MustCount(t, db, "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND allow_overdraft AND balance = $2", tenant, -n*funding); got != 1 {
		t.Errorf("%d equity accounts hold %d, want 1", got, -n*funding)
	}
	if got := ledgerRows(t, db, tenant); got != [3]int64{n, 2 * n, 0} {
		t.Errorf("transfers, entries, keys = %v, want [%d %d 0]", got, n, 2*n)
	}
}

// MustNaive serves a NaiveLedger for the tenant on loopback, writing
// events, and returns a client for it.
func MustNaive(tb testing.TB, db *postgres.DB, tenant string) *apitest.Client {
	tb.Helper()
	srv := httptest.NewServer(&lab.NaiveLedger{Pool: db.Pool, Tenant: tenant, Events: true})
	tb.Cleanup(srv.Close)
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	tb.Cleanup(transport.CloseIdleConnections)
	return &apitest.Client{URL: srv.URL, HTTP: &http.Client{Transport: transport}}
}

// TestNaiveLedger_Concurrent: 20 clients make 25 transfers each, every one
// with an Idempotency-Key; some are retried after their answer, some sent
// twice at once. Every transfer is stored once, every retry gets the
// original answer, and the ledger holds its invariants.
func TestNaiveLedger_Concurrent(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	accounts := MustSeed(t, db, tenant, 10, 1_000_000, false) // no transfer can overdraw
	c := MustNaive(t, db, tenant)
	const clients, perClient = 20, 25

	var mu sync.Mutex
	seen := map[string]int{} // transfer id → logical transfers acknowledged with it
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range perClient {
				d := rng.IntN(len(accounts))
				cr := (d + 1 + rng.IntN(len(accounts)-1)) % len(accounts)
				body := apitest.Transfer(accounts[d], accounts[cr], int64(1+rng.IntN(100)), "USD")
				key := fmt.Sprintf("naive-%d-%d", g, i)
				send := func() *apitest.Response {
					r, err := c.Send(context.Background(), "POST", "/v1/transfers", body, "Idempotency-Key", key)
					if err != nil {
						t.Errorf("transfer %s: %v", key, err)
						return nil
					}
					if r.Status != http.StatusCreated {
						t.Errorf("transfer %s: status %d: %s", key, r.Status, r.Body)
						return nil
					}
					return r
				}
				var first, again *apitest.Response
				switch i % 5 {
				case 0: // retried after the answer
					first = send()
					again = send()
				case 1: // sent twice at once
					var both sync.WaitGroup
					both.Go(func() { first = send() })
					again = send()
					both.Wait()
				default:
					first = send()
				}
				if first == nil {
					continue
				}
				if again != nil && !bytes.Equal(first.Body, again.Body) {
					t.Errorf("transfer %s: retry answered %s, want the original %s", key, again.Body, first.Body)
				}
				var created struct{ ID string }
				if err := json.Unmarshal(first.Body, &created); err != nil || created.ID == "" {
					t.Errorf("transfer %s: no id in %s", key, first.Body)
					continue
				}
				mu.Lock()
				seen[created.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	MustVerify(t, db, tenant)
	if len(seen) != clients*perClient {
		t.Errorf("%d distinct transfer ids acknowledged, want %d", len(seen), clients*perClient)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("transfer id %s acknowledged for %d different keys", id, n)
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	if stored := MustCount(t, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND id = ANY($2::uuid[])", tenant, ids); stored != int64(len(seen)) {
		t.Errorf("%d of the %d acknowledged transfers stored", stored, len(seen))
	}
	if made := transfersMade(t, db, tenant); made != int64(len(seen)) {
		t.Errorf("%d transfers stored, %d acknowledged: a retry was applied twice", made, len(seen))
	}
	if keys := MustCount(t, db, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND convert_from(outcome, 'UTF8')::jsonb ? 'result'", tenant); keys != clients*perClient {
		t.Errorf("%d keys with a stored result, want %d", keys, clients*perClient)
	}
	if events := MustCount(t, db, `SELECT count(*) FROM outbox WHERE tenant_id = $1 AND type = 'transfer.posted'
		AND (convert_from(data, 'UTF8')::jsonb->>'id')::uuid = ANY($2::uuid[])`, tenant, ids); events != int64(len(seen)) {
		t.Errorf("%d transfer.posted events for %d transfers", events, len(seen))
	}

	// An overdraw is refused and leaves no trace, not even its key.
	before := balance(t, db, accounts[0])
	mustRefuse(t, db, tenant, c, http.StatusUnprocessableEntity, "POST", "/v1/transfers",
		apitest.Transfer(accounts[0], accounts[1], before+1, "USD"), "Idempotency-Key", "overdraw")
	if after := balance(t, db, accounts[0]); after != before {
		t.Errorf("balance %d after a refused overdraw, want %d", after, before)
	}
}

// mustRefuse sends a request that the naive server must refuse with status,
// and fails tb unless the refusal left no row behind (not even its
// Idempotency-Key) and the ledger holds its invariants.
func mustRefuse(tb testing.TB, db *postgres.DB, tenant string, c *apitest.Client, status int, method, path string, body any, headers ...string) {
	tb.Helper()
	rows := ledgerRows(tb, db, tenant)
	c.Do(tb, method, path, body, headers...).MustStatus(tb, status)
	if got := ledgerRows(tb, db, tenant); got != rows {
		tb.Errorf("%s %s refused with %d: transfers, entries, keys = %v, want %v", method, path, status, got, rows)
	}
	MustVerify(tb, db, tenant)
}

// TestNaiveLedger_Refusals: requests the naive server cannot serve are
// refused and leave no trace.
func TestNaiveLedger_Refusals(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	a := MustSeed(t, db, tenant, 2, 100, false)
	c := MustNaive(t, db, tenant)
	unknown := "00000000-0000-7000-8000-000000000000"
	mustRefuse(t, db, tenant, c, http.StatusNotFound, "GET", "/v1/transfers", nil)
	mustRefuse(t, db, tenant, c, http.StatusNotFound, "POST", "/v1/accounts", apitest.Transfer(a[0], a[1], 1, "USD"))
	mustRefuse(t, db, tenant, c, http.StatusBadRequest, "POST", "/v1/transfers", "{", "Idempotency-Key", "bad-json")
	mustRefuse(t, db, tenant, c, http.StatusBadRequest, "POST", "/v1/transfers", apitest.Transfer(a[0], a[1], 0, "USD"), "Idempotency-Key", "zero")
	mustRefuse(t, db, tenant, c, http.StatusBadRequest, "POST", "/v1/transfers", apitest.Transfer(a[0], a[0], 1, "USD"), "Idempotency-Key", "self")
	mustRefuse(t, db, tenant, c, http.StatusNotFound, "POST", "/v1/transfers", apitest.Transfer(a[0], unknown, 1, "USD"), "Idempotency-Key", "unknown")
}

// TestRawBatch_SkipsOverdraws: a transfer that would overdraw an account
// without overdraft is skipped, judged on the balance left by the batch's
// earlier transfers.
func TestRawBatch_SkipsOverdraws(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	a := MustSeed(t, db, tenant, 5, 1_000, false)
	if err := lab.PrepareCeiling(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	batch := []lab.RawTransfer{
		{Key: "k1", Debit: a[0], Credit: a[1], Amount: 600},
		{Key: "k2", Debit: a[0], Credit: a[1], Amount: 600},  // 400 left: skipped
		{Key: "k3", Debit: a[1], Credit: a[2], Amount: 1500}, // 1600 after k1
		{Key: "k4", Debit: a[3], Credit: a[4], Amount: 1001}, // skipped
	}
	n, err := lab.RawBatch(context.Background(), db.Pool, tenant, "USD", batch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("RawBatch applied %d of %d, want 2", n, len(batch))
	}
	for i, want := range []int64{400, 100, 2500, 1000, 1000} {
		if got := balance(t, db, a[i]); got != want {
			t.Errorf("account %d: balance %d, want %d", i, got, want)
		}
	}
	if got := ledgerRows(t, db, tenant); got != [3]int64{5 + 2, 2*5 + 2*2, 2} {
		t.Errorf("transfers, entries, keys = %v, want [7 14 2]", got)
	}
	MustVerify(t, db, tenant)
}

// TestRawBatch_Concurrent: two goroutines apply batches on the same
// accounts, in any order within a batch, without deadlock, and every
// transfer counted as applied is stored.
func TestRawBatch_Concurrent(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	const nAccounts, goroutines, batches, size = 6, 2, 10, 100
	a := MustSeed(t, db, tenant, nAccounts, 1_000, false)
	if err := lab.PrepareCeiling(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	var applied, skipped int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for b := range batches {
				batch := make([]lab.RawTransfer, size)
				for i := range batch {
					d := rng.IntN(nAccounts)
					batch[i] = lab.RawTransfer{Key: fmt.Sprintf("raw-%d-%d-%d", g, b, i), Debit: a[d],
						Credit: a[(d+1+rng.IntN(nAccounts-1))%nAccounts], Amount: int64(1 + rng.IntN(500))}
				}
				n, err := lab.RawBatch(context.Background(), db.Pool, tenant, "USD", batch)
				if err != nil {
					t.Errorf("batch %d of goroutine %d: %v", b, g, err)
					continue
				}
				mu.Lock()
				applied, skipped = applied+int64(n), skipped+int64(size-n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	MustVerify(t, db, tenant)
	if applied == 0 || skipped == 0 {
		t.Errorf("%d applied, %d skipped: want both (amounts up to 500 on balances of about 1000)", applied, skipped)
	}
	if made := transfersMade(t, db, tenant); made != applied {
		t.Errorf("%d transfers stored, RawBatch reported %d", made, applied)
	}
}

// MustHoldfast serves Holdfast's API over db and returns its URL.
func MustHoldfast(tb testing.TB, db *postgres.DB) string { return apitest.MustServe(tb, db).URL() }

// TestBenchTransfers runs the whole transfer benchmark at a tiny scale:
// both workloads, every server answers, no transport error, the table is
// printed, and the ledger holds its invariants afterwards.
func TestBenchTransfers(t *testing.T) {
	t.Parallel()
	db, tenant, secret := setup(t)
	naive := MustNaive(t, db, tenant)
	ws, err := lab.BenchTransfers(context.Background(), lab.TransfersConfig{
		Pool: db.Pool, Tenant: tenant, HoldfastURL: MustHoldfast(t, db), APIKey: secret, NaiveURL: naive.URL,
		Accounts: 50, Concurrency: []int{4}, Duration: 300 * time.Millisecond, OpenWarmup: 100 * time.Millisecond, Progress: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Name != "uniform" || ws[1].Name != "hot" {
		t.Fatalf("workloads %+v, want uniform and hot", ws)
	}
	for _, w := range ws {
		if len(w.Holdfast) != 1 || len(w.Naive) != 1 {
			t.Fatalf("%s: %d holdfast and %d naive runs, want 1 each (one concurrency)", w.Name, len(w.Holdfast), len(w.Naive))
		}
		for _, r := range []lab.Result{w.Holdfast[0], w.Naive[0], w.Ceiling} {
			checkResult(t, r)
			if r.OK == 0 || r.Errors != 0 {
				t.Errorf("%s, %s: OK %d, Errors %d; want OK > 0, no error", w.Name, r.Name, r.OK, r.Errors)
			}
		}
		if len(w.Open) != 1 {
			t.Fatalf("%s: %d open loops, want 1 (at 80%% of the peak, the default)", w.Name, len(w.Open))
		}
		checkResult(t, w.Open[0])
		if want := 0.8 * lab.Peak(w.Holdfast).Throughput; w.Open[0].Offered != want || w.TargetOpen().Offered != want {
			t.Errorf("%s: open loop offered %v/s (target's %v/s), want 80%% of the peak, %v/s", w.Name, w.Open[0].Offered, w.TargetOpen().Offered, want)
		}
		if len(w.OpenWarm) != 1 {
			t.Fatalf("%s: %d warm-ups, want 1 (one open loop)", w.Name, len(w.OpenWarm))
		}
		// The machine's CPU is read for each measured run (from the end of
		// the open loop's warm-up), never for the warm-up alone.
		for _, r := range []lab.Result{w.Holdfast[0], w.Naive[0], w.Ceiling, w.Open[0]} {
			if !(r.CPUBusy > 0 && r.CPUBusy <= 1) {
				t.Errorf("%s, %s: CPU busy %v, want a share in (0, 1]", w.Name, r.Name, r.CPUBusy)
			}
		}
		warm := w.OpenWarm[0]
		if warm.CPUBusy != 0 {
			t.Errorf("%s: the warm-up's CPU busy %v, want none measured", w.Name, warm.CPUBusy)
		}
		checkResult(t, warm)
		if warm.Sent == 0 || warm.OK != warm.Sent || warm.Offered != w.Open[0].Offered {
			t.Errorf("%s: warm-up sent %d, OK %d at %v/s; want every request answered, at the loop's rate %v/s", w.Name, warm.Sent, warm.OK, warm.Offered, w.Open[0].Offered)
		}
	}
	var out bytes.Buffer
	lab.PrintTransfers(&out, ws)
	for _, want := range []string{"uniform workload", "hot workload", "holdfast/naive", "holdfast c=4", "naive c=4", "raw SQL", ", warm-up", "not counted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("PrintTransfers lacks %q:\n%s", want, out.String())
		}
	}
	MustVerify(t, db, tenant)
	io.WriteString(t.Output(), out.String())
}

// TestBenchTransfers_OpenLoopNotCappedByConcurrency: the open loop's
// outstanding requests do not depend on the closed loops' client counts. With
// one client the generator used to allow 4 requests in flight, so an open
// loop at 1,000/s, whose requests take longer than 4 ms here, counted most of
// its requests as not sent.
func TestBenchTransfers_OpenLoopNotCappedByConcurrency(t *testing.T) {
	t.Parallel()
	db, tenant, secret := setup(t)
	ws, err := lab.BenchTransfers(context.Background(), lab.TransfersConfig{
		Pool: db.Pool, Tenant: tenant, HoldfastURL: MustHoldfast(t, db), APIKey: secret,
		Accounts: 50, Concurrency: []int{1}, Duration: 300 * time.Millisecond, OpenRate: 1000,
		Workloads: []string{"uniform"}, SkipNaive: true, Progress: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || len(ws[0].Open) != 1 {
		t.Fatalf("workloads %+v, want uniform with one open loop", ws)
	}
	o := ws[0].Open[0]
	checkResult(t, o)
	if len(ws[0].OpenWarm) != 1 || ws[0].OpenWarm[0].Sent != 0 {
		t.Errorf("warm-ups %+v, want one that sent nothing (no OpenWarmup)", ws[0].OpenWarm)
	}
	if o.Errors != 0 || o.OK != o.Sent || o.Sent == 0 {
		t.Errorf("open loop at 1,000/s with one closed-loop client: sent %d, OK %d, errors %d; want every request sent and answered", o.Sent, o.OK, o.Errors)
	}
	MustVerify(t, db, tenant)
}
