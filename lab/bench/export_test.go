package bench

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
)

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
	buffered := httptest.NewServer(&naive.BufferedExport{Exports: exports, Tenant: tenant})
	t.Cleanup(buffered.Close)
	return db, tenant, key, account, srv.URL(), buffered.URL
}

// TestBenchExport runs every part of the export benchmark at a tiny scale.
func TestBenchExport(t *testing.T) {
	if _, err := Psql(); err != nil {
		t.Skip("no psql:", err)
	}
	db, tenant, key, account, holdfastURL, bufferedURL := exportSetup(t, 2_000)
	transfers := MustSeed(t, db, tenant, 10, 1_000_000, false)
	res, err := RunExport(context.Background(), ExportConfig{
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
	printExport(&out, res)
	for _, want := range []string{"holdfast / psql", "naive / holdfast", "2 exports alone", "the exports' own share"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("printExport wrote no %q:\n%s", want, out.Bytes())
		}
	}
	dbtest.MustVerify(t, db, tenant)
}

// TestBenchExport_PartC runs part (c) alone: nothing of (a) or (b).
func TestBenchExport_PartC(t *testing.T) {
	db, tenant, key, account, holdfastURL, bufferedURL := exportSetup(t, 2_000)
	transfers := MustSeed(t, db, tenant, 10, 1_000_000, false)
	res, err := RunExport(context.Background(), ExportConfig{
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
	printExport(&out, res)
	if bytes.Contains(out.Bytes(), []byte("(a)")) || bytes.Contains(out.Bytes(), []byte("(b)")) || !bytes.Contains(out.Bytes(), []byte("(c)")) {
		t.Errorf("printExport of part (c) wrote:\n%s", out.Bytes())
	}
	if _, err := RunExport(context.Background(), ExportConfig{Parts: "cd"}); err == nil {
		t.Errorf("parts \"cd\" accepted")
	}
}
