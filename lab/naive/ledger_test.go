package naive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
)

// MustNaive serves a naive.Ledger for the tenant on loopback, writing
// events, and returns a client for it.
func MustNaive(tb testing.TB, db *postgres.DB, tenant string) *apitest.Client {
	tb.Helper()
	srv := httptest.NewServer(&naive.Ledger{Pool: db.Pool, Tenant: tenant, Events: true})
	tb.Cleanup(srv.Close)
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	tb.Cleanup(transport.CloseIdleConnections)
	return &apitest.Client{URL: srv.URL, HTTP: &http.Client{Transport: transport}}
}

// TestLedger_Concurrent: 20 clients make 25 transfers each, every one
// with an Idempotency-Key; some are retried after their answer, some sent
// twice at once. Every transfer is stored once, every retry gets the
// original answer, and the ledger holds its invariants.
func TestLedger_Concurrent(t *testing.T) {
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

	dbtest.MustVerify(t, db, tenant)
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
	if stored := dbtest.MustCount(t, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND id = ANY($2::uuid[])", tenant, ids); stored != int64(len(seen)) {
		t.Errorf("%d of the %d acknowledged transfers stored", stored, len(seen))
	}
	if made := dbtest.TransfersMade(t, db, tenant); made != int64(len(seen)) {
		t.Errorf("%d transfers stored, %d acknowledged: a retry was applied twice", made, len(seen))
	}
	if keys := dbtest.MustCount(t, db, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND convert_from(outcome, 'UTF8')::jsonb ? 'result'", tenant); keys != clients*perClient {
		t.Errorf("%d keys with a stored result, want %d", keys, clients*perClient)
	}
	if events := dbtest.MustCount(t, db, `SELECT count(*) FROM outbox WHERE tenant_id = $1 AND type = 'transfer.posted'
		AND (convert_from(data, 'UTF8')::jsonb->>'id')::uuid = ANY($2::uuid[])`, tenant, ids); events != int64(len(seen)) {
		t.Errorf("%d transfer.posted events for %d transfers", events, len(seen))
	}

	// An overdraw is refused and leaves no trace, not even its key.
	before := dbtest.Balance(t, db, accounts[0])
	mustRefuse(t, db, tenant, c, http.StatusUnprocessableEntity, "POST", "/v1/transfers",
		apitest.Transfer(accounts[0], accounts[1], before+1, "USD"), "Idempotency-Key", "overdraw")
	if after := dbtest.Balance(t, db, accounts[0]); after != before {
		t.Errorf("balance %d after a refused overdraw, want %d", after, before)
	}
}

// mustRefuse sends a request that the naive server must refuse with status,
// and fails tb unless the refusal left no row behind (not even its
// Idempotency-Key) and the ledger holds its invariants.
func mustRefuse(tb testing.TB, db *postgres.DB, tenant string, c *apitest.Client, status int, method, path string, body any, headers ...string) {
	tb.Helper()
	rows := dbtest.LedgerRows(tb, db, tenant)
	c.Do(tb, method, path, body, headers...).MustStatus(tb, status)
	if got := dbtest.LedgerRows(tb, db, tenant); got != rows {
		tb.Errorf("%s %s refused with %d: transfers, entries, keys = %v, want %v", method, path, status, got, rows)
	}
	dbtest.MustVerify(tb, db, tenant)
}

// TestLedger_Refusals: requests the naive server cannot serve are
// refused and leave no trace.
func TestLedger_Refusals(t *testing.T) {
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
