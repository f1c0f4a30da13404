package main_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const adminToken = "e2e-admin-token-0123456789abcdef"

// MustRunMain runs Holdfast in-process on a free port, against the
// database at dbURL, with an embedded NATS in a temp dir.
func MustRunMain(tb testing.TB, dbURL string, configure ...func(*app.Config)) *app.Main {
	tb.Helper()
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = dbURL
	m.Config.DataDir = tb.TempDir()
	m.Config.AdminToken = adminToken
	m.Config.ShutdownTimeout = 10 * time.Second
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	m.Stdout = io.Discard
	for _, f := range configure {
		f(&m.Config)
	}
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
