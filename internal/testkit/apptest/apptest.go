// Package apptest starts the whole of Holdfast (an app.Main) in-process for
// a test: on a free loopback port, against a database the test names, with
// an embedded NATS in a temporary directory.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
)

// AdminToken is the admin token of the Mains MustStart starts.
const AdminToken = "e2e-admin-token-0123456789abcdef"

// MustStart starts Holdfast against the database at dbURL, its
// configuration adjusted by configure, and stops it when tb ends; it fails
// tb if Holdfast does not start.
func MustStart(tb testing.TB, dbURL string, configure ...func(*app.Config)) *app.Main {
	tb.Helper()
	m := New(tb, dbURL, configure...)
	if err := m.Start(context.Background()); err != nil {
		m.Stop()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Stop() })
	return m
}

// New returns the Main MustStart would start, not started.
func New(tb testing.TB, dbURL string, configure ...func(*app.Config)) *app.Main {
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = dbURL
	m.Config.DataDir = tb.TempDir()
	m.Config.AdminToken = AdminToken
	m.Config.ShutdownTimeout = 10 * time.Second
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	m.Stdout = io.Discard
	for _, f := range configure {
		f(&m.Config)
	}
	return m
}

// Admin returns a client of m's API with the admin token.
func Admin(m *app.Main) *apitest.Client {
	return &apitest.Client{URL: m.HTTP.URL(), Key: AdminToken}
}
