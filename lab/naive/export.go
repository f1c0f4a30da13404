package naive

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/export"
	"github.com/holdfast/holdfast/postgres"
)

// BufferedExport is the naive export the benchmark measures Holdfast's
// against: GET /v1/accounts/{id}/transactions.csv of Tenant runs the same
// query through the same CSV encoder, but into a bytes.Buffer, and writes
// the whole file once it is built. Memory grows with the account's history
// (and with every concurrent export); a slow client holds it all. There is
// no authentication: it serves one tenant, for benchmarks only.
type BufferedExport struct {
	Exports *postgres.ExportService // its own, with its own small pool
	Tenant  string
}

func (b *BufferedExport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/accounts/")
	id, csv := strings.CutSuffix(id, "/transactions.csv")
	if !ok || !csv || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	enc := export.NewCSVEncoder(&buf)
	if err := enc.WriteHeader(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	err := b.Exports.ExportEntries(r.Context(), b.Tenant, id, export.Query{}, enc.Encode)
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}
