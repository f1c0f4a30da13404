package lab_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
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
	if growth := g.Stop(); growth.RSS < 0 {
		t.Fatalf("growth %d < 0", growth.RSS)
	}
}

// What the work being measured holds shows in the live heap's growth, apart
// from the garbage the collector's target lets accumulate.
func TestRSSGrowth_CountsTheLiveHeap(t *testing.T) {
	g, err := lab.StartRSSGrowth(time.Hour) // samples at the start and at Stop only
	if err != nil {
		t.Fatal(err)
	}
	const held = 64 << 20
	b := make([]byte, held)
	for i := range b {
		b[i] = byte(i) // touched: resident
	}
	runtime.GC() // the collection that finds it live
	growth := g.Stop()
	runtime.KeepAlive(b)
	if growth.LiveHeap < held || growth.Heap < held || growth.RSS < held {
		t.Fatalf("holding %d MiB: growth of the live heap %d MiB, the heap %d MiB, RSS %d MiB; want each at least that",
			held>>20, growth.LiveHeap>>20, growth.Heap>>20, growth.RSS>>20)
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
	if res.ConcurrentOK != 2 || res.ExportsAloneOK != 2 {
		t.Errorf("%d concurrent exports streamed until cut off beside transfers, %d alone; want 2 and 2", res.ConcurrentOK, res.ExportsAloneOK)
	}
	if res.TransfersAlone.OK == 0 || res.WithLoad.OK == 0 {
		t.Errorf("transfers: %d alone, %d with exports; want some of each", res.TransfersAlone.OK, res.WithLoad.OK)
	}
	var out bytes.Buffer
	lab.PrintExport(&out, res)
	for _, want := range []string{"holdfast / psql", "naive / holdfast", "2 exports alone", "the exports' own share"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("PrintExport wrote no %q:\n%s", want, out.Bytes())
		}
	}
	MustVerify(t, db, tenant)
}

// TestBenchExport_PartC runs part (c) alone: nothing of (a) or (b).
func TestBenchExport_PartC(t *testing.T) {
	db, tenant, key, account, holdfastURL, bufferedURL := exportSetup(t, 2_000)
	transfers := MustSeed(t, db, tenant, 10, 1_000_000, false)
	res, err := lab.BenchExport(context.Background(), lab.ExportBenchConfig{
		Tenant: tenant, Account: account, Rows: 2_000, HoldfastURL: holdfastURL, APIKey: key, BufferedURL: bufferedURL,
		SlowRate: 64 << 10, SlowFor: 200 * time.Millisecond, Concurrent: 2, Transfers: transfers, Clients: 2, Parts: "c",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.FastHoldfast.Rows != 0 || res.SlowHoldfast.Rows != 0 || res.ExportsAloneOK != 2 || res.TransfersAlone.OK == 0 {
		t.Errorf("part (c) alone: fast %d rows, slow %d rows, %d exports alone, %d transfers; want (c) only",
			res.FastHoldfast.Rows, res.SlowHoldfast.Rows, res.ExportsAloneOK, res.TransfersAlone.OK)
	}
	var out bytes.Buffer
	lab.PrintExport(&out, res)
	if bytes.Contains(out.Bytes(), []byte("(a)")) || bytes.Contains(out.Bytes(), []byte("(b)")) || !bytes.Contains(out.Bytes(), []byte("(c)")) {
		t.Errorf("PrintExport of part (c) wrote:\n%s", out.Bytes())
	}
	if _, err := lab.BenchExport(context.Background(), lab.ExportBenchConfig{Parts: "cd"}); err == nil {
		t.Errorf("parts \"cd\" accepted")
	}
}
