package naive_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/lab/naive"
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
// and from a BufferedExport.
func exportSetup(t *testing.T, n int) (key, account, holdfastURL, bufferedURL string) {
	db, tenant, key := setup(t)
	account = mustSeedEntries(t, db, tenant, n)
	srv := apitest.MustServe(t, db)
	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(exports.Close)
	buffered := httptest.NewServer(&naive.BufferedExport{Exports: exports, Tenant: tenant})
	t.Cleanup(buffered.Close)
	return key, account, srv.URL(), buffered.URL
}

// TestBufferedExport_SameBytes: the naive export writes the same file as
// Holdfast's streaming one.
func TestBufferedExport_SameBytes(t *testing.T) {
	key, account, holdfastURL, bufferedURL := exportSetup(t, 1_000)
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
