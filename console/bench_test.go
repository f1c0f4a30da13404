package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/console"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// BenchmarkConsolePages measures each page's server time (ServeHTTP, no
// network) with 100 tenants and a backlog of 1,000,000 events in the
// outbox, held there by a transaction that locks them so the relay skips
// them. The page data is not cached (CacheTTL 1 ns): every render asks
// PostgreSQL and NATS, the worst case an operator meets.
//
//	go test ./console -run '^$' -bench ConsolePages -benchtime 50x
func BenchmarkConsolePages(b *testing.B) {
	ctx := context.Background()
	m := apptest.MustStart(b, pgtest.NewDatabase(b))
	tenants := postgres.NewTenantService(m.DB)
	var first string
	for i := 0; i < 100; i++ {
		t, _, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "tenant"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		first = t.ID
	}
	if _, err := m.DB.Pool.Exec(ctx, `INSERT INTO outbox (id, tenant_id, type, occurred_at, data)
		SELECT gen_random_uuid(), $1, 'bench.backlog', now(), '{}' FROM generate_series(1, 1000000)`, first); err != nil {
		b.Fatal(err)
	}
	hold, err := m.DB.Pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM outbox FOR UPDATE`); err != nil {
		b.Fatal(err)
	}
	var backlog int64
	m.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&backlog)
	b.Logf("outbox backlog: %d rows", backlog)

	c, err := console.New(console.Config{AdminToken: apptest.AdminToken, Live: m.Registry, Gatherer: m.Gatherer(),
		Consumers: m.Consumers(), Outbox: postgres.OutboxReader{DB: m.DB}, DeadLetters: m.HTTP.DeadLetterService,
		Tenants: tenants, CacheTTL: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	login := httptest.NewRequest("POST", "/console/login", strings.NewReader(url.Values{"token": {apptest.AdminToken}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, login)
	cookie := rec.Result().Cookies()[0]
	b.Run("sample", func(b *testing.B) {
		s := console.NewSampler(m.Registry, console.NewRing(900, 48), time.Second)
		at := time.Now()
		for b.Loop() {
			at = at.Add(time.Second)
			s.Sample(at)
		}
	})
	b.Run("outbox-query", func(b *testing.B) {
		for b.Loop() {
			if _, err := postgres.OutboxBacklog(ctx, m.DB); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("consumers-query", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Consumers().ListConsumers(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, path := range []string{"/console/", "/console/events/", "/console/receipts/", "/console/tenants/", "/console/tenants/" + first + "/", "/console/lab/", "/console/api/series"} {
		name := strings.Trim(strings.TrimPrefix(path, "/console/"), "/")
		if name == "" {
			name = "overview"
		} else if strings.Count(name, "/") == 1 && strings.HasPrefix(name, "tenants/") {
			name = "tenant"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				c.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
		})
	}
}
