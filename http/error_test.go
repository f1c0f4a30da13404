package http_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/postgres"
)

// startCluster starts a private PostgreSQL cluster of the test's own, which
// the test may stop and start again (at the same URL), and returns it with
// the URL of a fresh database on it.
func startCluster(t *testing.T, dir string) *pglocal.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Fast: true, Port: 5499})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// TestStoreUnavailable_Answers503AndRecovers: while the database is down,
// reads and writes (transfers with group commit and without, and the other
// writes) answer 503 store-unavailable with Retry-After, never 500; once
// it is back, they work again.
func TestStoreUnavailable_Answers503AndRecovers(t *testing.T) {
	t.Parallel()
	// A short directory, so the socket stays in it and the URL holds across restarts.
	dir, err := os.MkdirTemp("", "hfdown-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cluster := startCluster(t, dir)
	if err := cluster.CreateDatabase(context.Background(), "holdfast"); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(context.Background(), postgres.Config{URL: cluster.URL("holdfast"), MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := postgres.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	// Keys stay verified for the whole test, so that requests reach the
	// services while the database is down (and one uncached key shows the
	// authentication itself).
	withAdmin := func(c *holdfasthttp.Config) { c.AdminToken, c.AuthCacheTTL = adminToken, time.Hour }
	grouped := &TestServer{Server: apitest.MustServe(t, db, withAdmin), DB: db}
	direct := &TestServer{Server: apitest.MustServeWith(t, db, func(s *holdfasthttp.Server) {
		s.TransferService = postgres.NewTransferService(db)
	}, withAdmin), DB: db}
	c := grouped.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	clients := map[string]*Client{"group commit": c, "direct": {URL: direct.URL(), Key: c.Key, Tenant: c.Tenant}}

	type call struct {
		method, path string
		body         any
	}
	calls := []call{
		{"GET", "/v1/accounts", nil},
		{"GET", "/v1/accounts/" + alice, nil},
		{"POST", "/v1/accounts", map[string]any{"currency": "USD"}},
		{"POST", "/v1/transfers", Transfer(house, alice, 1, "USD")},
		{"POST", "/v1/linked-transfers", map[string]any{"transfers": []any{Transfer(house, alice, 1, "USD")}}},
		{"POST", "/v1/api-keys", nil},
	}
	uncached := &Client{URL: grouped.URL(), Key: c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201).JSON(t)["secret"].(string)}
	for _, cl := range clients {
		cl.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200) // verifies the key
	}
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := uncached.Do(t, "GET", "/v1/accounts", nil); r.Status != 503 || r.ProblemType(t) != "store-unavailable" {
		t.Errorf("authenticating with the database down: %d %s", r.Status, r.Body)
	}
	for name, cl := range clients {
		for _, k := range []string{"", "outage-key"} {
			for _, cc := range calls {
				var headers []string
				if k != "" && cc.method == "POST" {
					headers = []string{"Idempotency-Key", k + cc.path + name}
				}
				r := cl.Do(t, cc.method, cc.path, cc.body, headers...)
				what := fmt.Sprintf("%s: %s %s %v", name, cc.method, cc.path, headers)
				if r.Status != 503 {
					t.Errorf("%s with the database down: %d %s", what, r.Status, r.Body)
					continue
				}
				if typ := r.ProblemType(t); typ != "store-unavailable" {
					t.Errorf("%s with the database down: problem type %s, want store-unavailable", what, typ)
				}
				if r.Header.Get("Retry-After") == "" {
					t.Errorf("%s with the database down: no Retry-After", what)
				}
			}
		}
	}
	admin := grouped.Admin()
	if r := admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "down"}); r.Status != 503 || r.ProblemType(t) != "store-unavailable" {
		t.Errorf("create tenant with the database down: %d %s", r.Status, r.Body)
	}

	startCluster(t, dir)
	for name, cl := range clients {
		for _, cc := range calls {
			want := 200
			if cc.method == "POST" {
				want = 201
			}
			// The same Idempotency-Key as during the outage: the refusal kept nothing.
			var headers []string
			if cc.method == "POST" {
				headers = []string{"Idempotency-Key", "outage-key" + cc.path + name}
			}
			if r := cl.Do(t, cc.method, cc.path, cc.body, headers...); r.Status != want {
				t.Errorf("%s: %s %s after the database is back: %d %s", name, cc.method, cc.path, r.Status, r.Body)
			}
		}
	}
	if got := c.Balance(t, alice); got != 4 {
		t.Errorf("alice's balance %d, want 4: only the transfers sent while the database was up", got)
	}
}
