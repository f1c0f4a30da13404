package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// runMain runs the program on the database at dbURL with the data
// directory dir and returns it, or Run's error (the Main then closed).
func runMain(t *testing.T, dbURL, dir string) (*app.Main, error) {
	t.Helper()
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = dbURL
	m.Config.DataDir = dir
	m.Config.AdminToken = apptest.AdminToken
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	m.Stdout = io.Discard
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	t.Cleanup(func() { m.Stop() })
	return m, nil
}

// Two replicas that each run a private embedded NATS on one database would
// each have a stream of their own, numbered from 1, against one record of
// progress: the second is refused at start, and told what to do.
func TestMain_SecondEmbeddedNATSIsRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	apptest.MustStart(t, db)
	_, err := runMain(t, db, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("Run = %v, want the second embedded NATS refused, pointing at --nats-url", err)
	}
}

// auditCount returns how many audit records the tenant has.
func auditCount(t *testing.T, dbURL, tenant string) int64 {
	t.Helper()
	var n int64
	if err := dbtest.MustPool(t, dbURL).QueryRow(t.Context(), "SELECT count(*) FROM audit_records WHERE tenant_id = $1", tenant).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A replica whose embedded NATS lost its files would start a new stream
// numbered from 1: it is refused at start, with the way out; after
// 'holdfast adopt-stream' it starts, and every new event is audited.
func TestAdoptStream_AfterTheNATSFilesAreLost(t *testing.T) {
	t.Parallel()
	db, dir := pgtest.NewDatabase(t), t.TempDir()
	first, err := runMain(t, db, dir)
	if err != nil {
		t.Fatal(err)
	}
	c := apptest.Admin(first).MustTenant(t, "adopt")
	post := func(n int) {
		t.Helper()
		batch := make([]map[string]any, n)
		for i := range batch {
			batch[i] = map[string]any{"type": "page.view"}
		}
		c.Do(t, "POST", "/v1/events", map[string]any{"events": batch}).MustStatus(t, 202)
	}
	post(3)
	if err := first.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := auditCount(t, db, c.Tenant); got != 3 {
		t.Fatalf("audit holds %d, want 3", got)
	}
	first.Stop()
	if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
		t.Fatal(err)
	}

	_, err = runMain(t, db, dir)
	if !errors.Is(err, events.ErrStreamNotBound) || !strings.Contains(err.Error(), "adopt-stream") {
		t.Fatalf("Run after the NATS files were lost = %v, want ErrStreamNotBound naming adopt-stream", err)
	}
	var out bytes.Buffer
	if err := app.AdoptStreams(t.Context(), adoptConfig(db, dir), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stream events: adopted") || !strings.Contains(out.String(), "analytics, audit") {
		t.Fatalf("adopt-stream said:\n%s", out.String())
	}
	second, err := runMain(t, db, dir)
	if err != nil {
		t.Fatal(err)
	}
	c.URL = second.HTTP.URL()
	post(2)
	if err := second.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := auditCount(t, db, c.Tenant); got != 5 {
		t.Fatalf("audit holds %d, want 5", got)
	}
	v := c.Do(t, "GET", "/v1/audit/verify", nil).MustStatus(t, 200).JSON(t)
	if v["ok"] != true {
		t.Fatalf("verify = %v", v)
	}
}

// The outbox exists so that the ledger keeps working without NATS: a
// replica whose NATS is down stays ready (PostgreSQL answers), says so in
// holdfast_nats_connected and /v1/admin/consumers, commits transfers whose
// events wait in the outbox, and drains the outbox once NATS is back.
func TestMain_ReadyWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	nats := natstest.StartServer(t)
	db := pgtest.NewDatabase(t)
	m := apptest.MustStart(t, db, func(c *app.Config) { c.NATSURL = nats.URL })
	c := apptest.Admin(m).MustTenant(t, "nats-down")
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	if err := m.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	anon := &apitest.Client{URL: m.HTTP.URL()}
	connected := func() string {
		for _, line := range strings.Split(string(anon.Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body), "\n") {
			if v, ok := strings.CutPrefix(line, "holdfast_nats_connected "); ok {
				return v
			}
		}
		return "absent"
	}
	if got := connected(); got != "1" {
		t.Fatalf("holdfast_nats_connected = %s with NATS up, want 1", got)
	}

	nats.Stop()
	anon.Do(t, "GET", "/readyz", nil).MustStatus(t, 200)
	waitFor(t, "holdfast_nats_connected 0", func() bool { return connected() == "0" })
	for range 5 {
		c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 10, "USD")).MustStatus(t, 201)
	}
	if got := c.Balance(t, alice); got != 50 {
		t.Fatalf("balance = %d, want 50", got)
	}
	var waiting int64
	if err := dbtest.MustPool(t, db).QueryRow(t.Context(), "SELECT count(*) FROM outbox").Scan(&waiting); err != nil || waiting == 0 {
		t.Fatalf("outbox holds %d rows (%v) with NATS down, want the transfers' events", waiting, err)
	}
	groups := apptest.Admin(m).Do(t, "GET", "/v1/admin/consumers", nil).MustStatus(t, 200).JSON(t)["data"].([]any)
	for _, g := range groups {
		if g := g.(map[string]any); g["nats_connected"] != false || g["nats_error"] == "" {
			t.Fatalf("consumer %v with NATS down, want nats_connected false and the error", g)
		}
	}
	anon.Do(t, "GET", "/readyz", nil).MustStatus(t, 200)

	nats.Start()
	waitFor(t, "holdfast_nats_connected 1", func() bool { return connected() == "1" })
	if err := m.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := auditCount(t, db, c.Tenant); got != 2+5 {
		t.Fatalf("audit holds %d records, want 7: two accounts, five transfers", got)
	}
}

// waitFor polls cond until it holds, failing t after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// adoptConfig is what adopt-stream is given: the database, and the data
// directory of the embedded NATS whose streams to adopt.
func adoptConfig(dbURL, dataDir string) app.Config {
	c := app.NewMain().Config
	c.DatabaseURL, c.DataDir = dbURL, dataDir
	return c
}
