package lab_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/apitest"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/postgres"
)

// mustGet returns the body of a 200 answer to GET url.
func mustGet(tb testing.TB, url, key string) []byte {
	tb.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s, %v: %s", url, resp.Status, err, b)
	}
	return b
}

// exportSetup seeds an account of n entries and serves it from Holdfast
// (with room for concurrent exports) and from a BufferedExport.
func exportSetup(t *testing.T, n int) (db *postgres.DB, tenant, key, account, holdfastURL, bufferedURL string) {
	db, tenant, key = setup(t)
	account = mustSeedEntries(t, db, tenant, n)
	srv := apitest.MustServe(t, db, func(c *holdfasthttp.Config) { c.ExportSlots, c.ExportSlotsPerTenant = 4, 4 })
	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exports.Close)
	buffered := httptest.NewServer(&lab.BufferedExport{Exports: exports, Tenant: tenant})
	t.Cleanup(buffered.Close)
	return db, tenant, key, account, srv.URL(), buffered.URL
}

func TestBufferedExport_SameBytes(t *testing.T) {
	_, _, key, account, holdfastURL, bufferedURL := exportSetup(t, 1_000)
	path := "/v1/accounts/" + account + "/transactions.csv"
	want := mustGet(t, holdfastURL+path, key)
	got := mustGet(t, bufferedURL+path, "")
	if !bytes.Equal(got, want) {
		t.Fatalf("buffered export (%d bytes) differs from Holdfast's (%d bytes)", len(got), len(want))
	}
	if lines := bytes.Count(got, []byte{'\n'}); lines != 1_001 {
		t.Fatalf("%d lines, want a header and 1,000 rows", lines)
	}
}

func TestRSS(t *testing.T) {
	n, err := lab.RSS()
	if err != nil || n <= 0 {
		t.Fatalf("RSS() = %d, %v; want a positive size", n, err)
	}
	g, err := lab.StartRSSGrowth(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if growth := g.Stop(); growth < 0 {
		t.Fatalf("growth %d < 0", growth)
	}
}

// TestBenchExport runs every part of the export benchmark at a tiny scale.
func TestBenchExport(t *testing.T) {
	if _, err := lab.Psql(); err != nil {
		t.Skip("no psql:", err)
	}
	db, tenant, key, account, holdfastURL, bufferedURL := exportSetup(t, 2_000)
	transfers := MustSeed(t, db, tenant, 10, 1_000_000, false)
	res, err := lab.BenchExport(context.Background(), lab.ExportBenchConfig{
		DatabaseURL: db.Pool.Config().ConnString(), Tenant: tenant, Account: account, Rows: 2_000,
		HoldfastURL: holdfastURL, APIKey: key, BufferedURL: bufferedURL,
		SlowRate: 64 << 10, SlowFor: 200 * time.Millisecond, Concurrent: 2, Transfers: transfers, Clients: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.FastPsql.Bytes == 0 || res.FastHoldfast.Bytes <= res.FastPsql.Bytes {
		t.Errorf("holdfast %d bytes, psql %d: want psql's > 0 and Holdfast's larger (header, direction column)",
			res.FastHoldfast.Bytes, res.FastPsql.Bytes)
	}
	if res.ConcurrentOK != 2 {
		t.Errorf("%d concurrent exports streamed until cut off, want 2", res.ConcurrentOK)
	}
	if res.TransfersAlone.OK == 0 || res.WithLoad.OK == 0 {
		t.Errorf("transfers: %d alone, %d with exports; want some of each", res.TransfersAlone.OK, res.WithLoad.OK)
	}
	var out bytes.Buffer
	lab.PrintExport(&out, res)
	if !bytes.Contains(out.Bytes(), []byte("holdfast / psql")) {
		t.Errorf("PrintExport wrote:\n%s", out.Bytes())
	}
	MustVerify(t, db, tenant)
}
