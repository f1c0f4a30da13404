package http

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/export"
)

// ExportService streams an account's entries; postgres.ExportService
// implements it. fn is called once per row, as rows are read; an error from
// it stops the export.
type ExportService interface {
	ExportEntries(ctx context.Context, tenantID, accountID string, q export.Query, fn func(*export.Row) error) error
}

// exportFlushSize is the buffer between the encoder and the connection: the
// write deadline is pushed forward once per flush of it.
const exportFlushSize = 32 << 10

// exportPath reports whether a request path is a streaming export, which
// runs under no request deadline (see observe): a stalled client is cut off
// by the rolling write deadline instead, and a gone one by its context.
func exportPath(path string) bool {
	return strings.HasSuffix(path, "/transactions.csv") || strings.HasSuffix(path, "/transactions.ndjson")
}

type exportMetrics struct {
	active  prometheus.Gauge
	rows    prometheus.Counter
	bytes   prometheus.Counter
	cutoffs prometheus.Counter
}

// newExportMetrics returns the export metrics, registered with reg unless it is nil.
func newExportMetrics(reg prometheus.Registerer) (*exportMetrics, error) {
	m := &exportMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holdfast_exports_active", Help: "Exports streaming now."}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_export_rows_total", Help: "Rows streamed by exports."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_export_bytes_total", Help: "Bytes written by exports to clients."}),
		cutoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_export_cutoffs_total", Help: "Exports cut off because the client stalled or went away."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.active, m.rows, m.bytes, m.cutoffs} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// exportFormat is a file format an export is offered in.
type exportFormat struct {
	ext, contentType string
	encoder          func(io.Writer) exportEncoder
}

// exportEncoder is an encoder that also knows how an export begins.
type exportEncoder interface {
	export.Encoder
	start() error // what an export writes before its first row, even with none
}

// csvEncoder begins with the header row; ndjsonEncoder with nothing.
type csvEncoder struct{ *export.CSVEncoder }

func (e csvEncoder) start() error { return e.WriteHeader() }

type ndjsonEncoder struct{ *export.NDJSONEncoder }

func (ndjsonEncoder) start() error { return nil }

var (
	csvExport = exportFormat{"csv", "text/csv; charset=utf-8",
		func(w io.Writer) exportEncoder { return csvEncoder{export.NewCSVEncoder(w)} }}
	ndjsonExport = exportFormat{"ndjson", "application/x-ndjson",
		func(w io.Writer) exportEncoder { return ndjsonEncoder{export.NewNDJSONEncoder(w)} }}
)

func (s *Server) handleExportCSV(w http.ResponseWriter, r *http.Request) { s.export(w, r, csvExport) }

func (s *Server) handleExportNDJSON(w http.ResponseWriter, r *http.Request) {
	s.export(w, r, ndjsonExport)
}

// export streams the account's entries in format f: rows go from one
// database query through the encoder and a 32 KiB buffer to the connection,
// so a client that reads slowly slows the query down (backpressure) and
// memory does not grow with the row count. Each flush first pushes the
// write deadline ExportStallTimeout ahead; a client that accepts nothing for
// that long, or goes away, cuts the export off and frees its slot and
// database connection.
func (s *Server) export(w http.ResponseWriter, r *http.Request, f exportFormat) {
	q, err := exportQueryFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	tenant := tenantFrom(r.Context())
	if !s.exportSlots.TryAcquire(tenant) {
		s.Error(w, r, holdfast.Errorf(ERATELIMITED, "too many exports are running; retry later"))
		return
	}
	defer s.exportSlots.Release(tenant)
	s.exportMetrics.active.Inc()
	defer s.exportMetrics.active.Dec()

	id := holdfast.CanonicalID(r.PathValue("id"))
	sw := &stallWriter{w: w, rc: http.NewResponseController(w), stall: s.cfg.ExportStallTimeout, bytes: s.exportMetrics.bytes}
	bw := bufio.NewWriterSize(sw, exportFlushSize)
	enc := f.encoder(bw)
	started := false
	begin := func() error {
		started = true
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Content-Disposition", `attachment; filename="`+id+"-transactions."+f.ext+`"`)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return enc.start()
	}
	err = s.ExportService.ExportEntries(r.Context(), tenant, id, q, func(row *export.Row) error {
		if !started {
			if err := begin(); err != nil {
				return err
			}
		}
		s.exportMetrics.rows.Inc()
		return enc.Encode(row)
	})
	if err == nil && !started {
		err = begin() // no rows: still a file, with its header
	}
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
	case !started:
		s.Error(w, r, err) // nothing written yet: a problem document
	case sw.err != nil || r.Context().Err() != nil:
		s.exportMetrics.cutoffs.Inc()
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "export cut off",
			slog.String("request_id", requestIDFrom(r.Context())), slog.Int64("bytes", sw.n), slog.String("err", err.Error()))
	default:
		// A fault mid-stream: the status is sent, so break the connection
		// rather than end the body cleanly and pass off a truncated file.
		s.logger.LogAttrs(r.Context(), slog.LevelError, "export failed",
			slog.String("request_id", requestIDFrom(r.Context())), slog.String("err", err.Error()))
		panic(http.ErrAbortHandler)
	}
}

// exportQueryFrom reads from, to (RFC 3339) and after (an entry id).
func exportQueryFrom(r *http.Request) (export.Query, error) {
	var q export.Query
	v := r.URL.Query()
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, holdfast.Errorf(holdfast.EINVALID, "%s must be an RFC 3339 time", p.name)
			}
			*p.t = t
		}
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, holdfast.Errorf(holdfast.EINVALID, "after must be an entry id")
		}
		q.After = n
	}
	return q, nil
}

// stallWriter pushes the connection's write deadline ahead before each
// write (one per flush of the buffer above it) and remembers the first
// write error, which means the client stalled or went away.
type stallWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	bytes prometheus.Counter
	n     int64
	err   error
}

func (sw *stallWriter) Write(b []byte) (int, error) {
	if sw.err != nil {
		return 0, sw.err
	}
	if err := sw.rc.SetWriteDeadline(time.Now().Add(sw.stall)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		sw.err = err
		return 0, err
	}
	n, err := sw.w.Write(b)
	if err == nil {
		err = sw.rc.Flush() // past net/http's own buffers, under the same deadline
	}
	sw.n += int64(n)
	sw.bytes.Add(float64(n))
	if err != nil {
		sw.err = err
	}
	return n, err
}
