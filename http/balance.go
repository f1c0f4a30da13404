package http

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// handleBalanceAt answers GET /v1/accounts/{id}/balance?at=: the balance
// at a moment (now without at).
func (s *Server) handleBalanceAt(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	if v := r.URL.Query().Get("at"); v != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, v); err != nil {
			s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "at must be an RFC 3339 time, such as 2026-01-31T23:59:59Z"))
			return
		}
	}
	b, err := s.BalanceService.BalanceAt(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), at)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, b)
}

// handleBalanceHistory answers GET /v1/accounts/{id}/balances?from&to&interval
// with the balance at each point, one JSON object a line
// (application/x-ndjson), streamed as the points are read.
func (s *Server) handleBalanceHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h := holdfast.BalanceHistory{}
	switch q.Get("interval") {
	case "hour":
		h.Interval = time.Hour
	case "day", "":
		h.Interval = 24 * time.Hour
	default:
		s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "interval must be hour or day"))
		return
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &h.From}, {"to", &h.To}} {
		v, err := time.Parse(time.RFC3339Nano, q.Get(p.name))
		if err != nil {
			s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "%s must be an RFC 3339 time, such as 2026-01-31T00:00:00Z", p.name))
			return
		}
		*p.t = v
	}
	var bw *bufio.Writer
	var enc *json.Encoder
	err := s.BalanceService.BalanceHistory(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), h, func(b *holdfast.Balance) error {
		if bw == nil { // the first point: from here on the answer is a 200
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			bw = bufio.NewWriterSize(w, exportFlushSize)
			enc = json.NewEncoder(bw)
		}
		return enc.Encode(b)
	})
	switch {
	case bw == nil && err != nil:
		s.Error(w, r, err)
	case err != nil:
		// The status is sent: the client sees a stream cut short.
		s.logger.LogAttrs(r.Context(), slog.LevelWarn, "balance history cut short",
			slog.String("request_id", requestIDFrom(r.Context())), slog.String("err", err.Error()))
	case bw != nil:
		bw.Flush()
	default:
		w.Header().Set("Content-Type", "application/x-ndjson") // the account exists and the range had no point: impossible, from ≤ to
		w.WriteHeader(http.StatusOK)
	}
}
