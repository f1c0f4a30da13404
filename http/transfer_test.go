package http_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/postgres"
)

// TestTransfers_ShortRequestTimeoutNeverRefusesWhatCommits: many clients
// send transfers with their own ids and no Idempotency-Key under a
// Request-Timeout shorter than a batch, and wait for every answer (they
// never hang up). Every 503 is for a transfer that does not exist, and
// every transfer that exists was answered 201: a client that retries after
// a 503 never pays twice. With group commit and without.
func TestTransfers_ShortRequestTimeoutNeverRefusesWhatCommits(t *testing.T) {
	t.Parallel()
	for _, gc := range []bool{true, false} {
		t.Run(fmt.Sprintf("group_commit=%v", gc), func(t *testing.T) {
			t.Parallel()
			db := dbtest.MustOpenDB(t)
			withAdmin := func(c *holdfasthttp.Config) { c.AdminToken = adminToken }
			services := func(s *holdfasthttp.Server) {
				if !gc {
					s.TransferService = postgres.NewTransferService(db) // each request its own transaction
				}
			}
			s := &TestServer{Server: apitest.MustServeWith(t, db, services, withAdmin), DB: db}
			c := s.MustTenant(t)
			house := c.MustAccount(t, "USD", true)
			accounts := []string{c.MustAccount(t, "USD", false), c.MustAccount(t, "USD", false), c.MustAccount(t, "USD", false)}

			const streams, perStream = 16, 30
			var mu sync.Mutex
			status := map[string]int{} // transfer id → the status answered
			var wg sync.WaitGroup
			for i := range streams {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(i), 3))
					for range perStream {
						id := uuid.NewString()
						body := Transfer(house, accounts[rng.IntN(len(accounts))], 1, "USD")
						body["id"] = id
						// 1 to 20 ms; a few without one keep connections
						// warm and show that transfers do succeed.
						headers := []string{"Request-Timeout", strconv.Itoa(1 + rng.IntN(20))}
						if rng.IntN(5) == 0 {
							headers = nil
						}
						r, err := c.Send(context.Background(), "POST", "/v1/transfers", body, headers...)
						if err != nil {
							t.Errorf("no answer: %v", err) // the client never hangs up, so every request is answered
							return
						}
						switch r.Status {
						case 201:
						case 503:
							if r.Header.Get("Retry-After") == "" {
								t.Errorf("503 without Retry-After: %s", r.Body)
							}
						default:
							t.Errorf("status %d: %s", r.Status, r.Body)
						}
						mu.Lock()
						status[id] = r.Status
						mu.Unlock()
					}
				})
			}
			wg.Wait()

			var created, refused, refusedButExists int
			for id, st := range status {
				exists := c.Do(t, "GET", "/v1/transfers/"+id, nil).Status == 200
				switch {
				case st == 201 && !exists:
					t.Errorf("transfer %s answered 201 but not found", id)
				case st == 201:
					created++
				case st == 503:
					refused++
					if exists {
						refusedButExists++
					}
				}
			}
			if refusedButExists > 0 {
				t.Errorf("%d of %d answers 503 (retry) were for transfers that exist", refusedButExists, refused)
			}
			var stored int
			if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND debit_account_id = $2", c.Tenant, house).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != created {
				t.Errorf("%d transfers stored, %d answered 201", stored, created)
			}
			t.Logf("%d answered 201, %d answered 503", created, refused)
		})
	}
}
