package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab/naive"
)

// The line `holdfast-lab bench transfers` prints after each Holdfast run counts
// what the relay did during that run alone. The call made before a run to
// reset the counts must move every baseline even when no batch ran since
// the call before: the naive server's events, relayed while the benchmark
// drained the log between runs, are not the next run's.
func TestBatchStats_ResetCoversTheEvents(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	m := MustRunMain(t, db)
	c := admin(m).MustTenant(t, "stats")
	house := c.MustAccount(t, "EUR", true)
	alice := c.MustAccount(t, "EUR", false)
	ctx := context.Background()
	stats := batchStats(m)
	stats()

	// One event written outside group commit, as the naive server does.
	naiveSrv := httptest.NewServer(&naive.Ledger{Pool: mustPool(t, db), Tenant: c.Tenant, Events: true})
	t.Cleanup(naiveSrv.Close)
	(&apitest.Client{URL: naiveSrv.URL}).Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 5, "EUR"), "Idempotency-Key", "naive-1").MustStatus(t, 201)
	if err := m.DrainEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stats(); got != "no batches" {
		t.Fatalf("reset: %q, want \"no batches\"", got)
	}

	// One Holdfast transfer: one batch, one event.
	c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 7, "EUR")).MustStatus(t, 201)
	if err := m.DrainEvents(ctx); err != nil {
		t.Fatal(err)
	}
	got := stats()
	for _, want := range []string{"group commit: 1 batches, mean 1.0 requests", "ms in the queue on average", "relayed meanwhile: 1 events in 1 stream messages"} {
		if !strings.Contains(got, want) {
			t.Errorf("after one transfer: %q, want it to contain %q", got, want)
		}
	}
}

const adminToken = "bench-admin-token-0123456789abcdef"

// MustRunMain runs Holdfast in-process on a free port, against the
// database at dbURL, with an embedded NATS in a temp dir.
func MustRunMain(tb testing.TB, dbURL string) *app.Main {
	tb.Helper()
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = dbURL
	m.Config.DataDir = tb.TempDir()
	m.Config.AdminToken = adminToken
	m.Config.ShutdownTimeout = 10 * time.Second
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	m.Stdout = io.Discard
	if err := m.Start(context.Background()); err != nil {
		m.Stop()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Stop() })
	return m
}

func admin(m *app.Main) *apitest.Client { return &apitest.Client{URL: m.HTTP.URL(), Key: adminToken} }

func mustPool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}
