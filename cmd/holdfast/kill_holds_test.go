package main_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// TestServe_Kill9WithHolds is the crash-torture invariant extended to
// holds: two replicas on one database serve holds (some with a timeout
// shorter than the test), posts, voids and plain transfers from clients
// that race to post and void the same holds, and one replica is killed
// with SIGKILL mid-flow, then restarted. Afterwards, once the sweepers have
// expired what was due: for every account, available = posted − pending
// debits and stays within its limit, the pending totals are the holds
// still pending, no hold was resolved twice, none was posted at or after
// its timeout, and every post or void a client saw acknowledged is stored
// once, as what it was.
func TestServe_Kill9WithHolds(t *testing.T) {
	t.Parallel()
	natsURL := natstest.ExternalURL(t)
	if natsURL == natstest.DefaultURL {
		t.Skip("needs a nats-server of its own (the shared one on 4222 may hold other jobs)")
	}
	bin := mustBinary(t)
	dbURL := pgtest.NewDatabase(t)
	flags := []string{"--nats-url", natsURL, "--hold-sweep-interval", "100ms"}
	a, b := startServe(t, bin, dbURL, t.TempDir(), flags...), startServe(t, bin, dbURL, t.TempDir(), flags...)
	c := (&apitest.Client{URL: a.base, Key: apptest.AdminToken}).MustTenant(t, "kill9-holds")
	house := c.MustAccount(t, "USD", true)
	customers := make([]string, 6)
	for i := range customers {
		customers[i] = c.MustAccount(t, "USD", false)
		c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, customers[i], 10_000, "USD")).MustStatus(t, 201)
	}
	limited := c.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD", "overdraft_limit": 500}).MustStatus(t, 201).JSON(t)["id"].(string)
	customers = append(customers, limited)

	var mu sync.Mutex
	acked := map[string]string{} // resolving transfer id → post or void, as acknowledged
	steps := 0
	base := func(i int) string { // the replicas' addresses; a restart changes one
		mu.Lock()
		defer mu.Unlock()
		return []string{a.base, b.base}[i%2]
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			client := *c
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Each worker uses both replicas, and a killed one stays
				// unreachable until it is restarted: errors are expected.
				client.URL = base(rng.IntN(2))
				from, to := customers[rng.IntN(len(customers))], customers[rng.IntN(len(customers))]
				if from == to {
					to = house
				}
				hold := apitest.Transfer(from, to, int64(1+rng.IntN(400)), "USD")
				hold["pending"] = true
				expiring := rng.IntN(3) == 0
				if expiring {
					hold["timeout"] = 1 + rng.IntN(2)
				}
				r, err := client.Send(context.Background(), "POST", "/v1/transfers", hold)
				if err != nil || r.Status != 201 || expiring && rng.IntN(2) == 0 {
					continue // some holds are left to expire
				}
				id := r.JSON(t)["id"].(string)
				// Race a post and a void of the same hold through both replicas.
				var race sync.WaitGroup
				for k, action := range []string{"post", "void"} {
					race.Go(func() {
						rc := client
						rc.URL = base(i + k)
						rid := uuid.NewString()
						r, err := rc.Send(context.Background(), "POST", "/v1/transfers/"+id+"/"+action, map[string]any{"id": rid})
						if err == nil && r.Status == 201 {
							mu.Lock()
							acked[rid] = action
							mu.Unlock()
						}
					})
				}
				race.Wait()
				mu.Lock()
				steps++
				mu.Unlock()
			}
		})
	}
	waitUntil(t, "holds are posted and voided through both replicas", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return steps >= 40
	})
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	waitUntil(t, "the other replica carries on", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return steps >= 80
	})
	restarted := startServe(t, bin, dbURL, t.TempDir(), flags...)
	mu.Lock()
	a = restarted
	mu.Unlock()
	waitUntil(t, "the restarted replica serves", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return steps >= 100
	})
	close(stop)
	wg.Wait()

	pool := dbtest.MustPool(t, dbURL)
	ctx := context.Background()
	// Every hold with a timeout expires within a few sweeps of it. Wait
	// for all of them, not only those already due, so that however fast
	// the run was, the holds left pending have expired when it is checked.
	waitUntil(t, "the sweepers expire every hold with a timeout", func() bool {
		var due int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM transfers WHERE tenant_id = $1 AND status = 'pending' AND expires_at IS NOT NULL`, c.Tenant).Scan(&due); err != nil {
			t.Fatal(err)
		}
		return due == 0
	})
	db, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := postgres.VerifyLedger(ctx, db, c.Tenant); err != nil {
		t.Fatal(err)
	}
	var broken int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE tenant_id = $1 AND NOT allow_overdraft
		AND balance - pending_debits < -overdraft_limit`, c.Tenant).Scan(&broken); err != nil || broken != 0 {
		t.Fatalf("%d accounts whose available balance is past their limit (%v)", broken, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) > steps {
		t.Fatalf("%d resolutions acknowledged for %d raced holds: a hold was resolved twice", len(acked), steps)
	}
	counts := map[string]int{}
	for rid, action := range acked {
		var status string
		if err := pool.QueryRow(ctx, `SELECT status FROM transfers WHERE tenant_id = $1 AND id = $2`, c.Tenant, rid).Scan(&status); err != nil {
			t.Fatalf("acknowledged %s %s is not stored: %v", action, rid, err)
		}
		if want := map[string]string{"post": "posted", "void": "voided"}[action]; status != want {
			t.Fatalf("acknowledged %s %s is stored as %s", action, rid, status)
		}
		counts[action]++
	}
	var expired int
	pool.QueryRow(ctx, `SELECT count(*) FROM transfers WHERE tenant_id = $1 AND pending AND status = 'expired'`, c.Tenant).Scan(&expired)
	t.Logf("%d rounds; %d posts and %d voids acknowledged; %d holds expired", steps, counts["post"], counts["void"], expired)
	if counts["post"] == 0 || counts["void"] == 0 || expired == 0 {
		t.Fatalf("the test exercised too little: %v", counts)
	}
}
