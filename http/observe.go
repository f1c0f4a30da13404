package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// recorder is the one wrapper of every response: it remembers the status
// and size a handler wrote, for logs, metrics and admission control, and
// turns the mux's own plain-text 404 and 405 (a request it found no pattern
// for) into problem documents as they start to write.
type recorder struct {
	http.ResponseWriter
	s        *Server
	r        *http.Request // the mux sets its Pattern before calling a handler
	status   int
	written  int64
	replaced bool // the mux's plain text is being replaced
}

func (w *recorder) WriteHeader(status int) {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	w.status = status
	if w.r.Pattern != "" || status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	w.replaced = true
	if status == http.StatusMethodNotAllowed { // the mux has set Allow
		w.s.Error(w.ResponseWriter, w.r, holdfast.Errorf(EMETHOD, "%s is not allowed on %s", w.r.Method, w.r.URL.Path))
		return
	}
	w.s.Error(w.ResponseWriter, w.r, holdfast.Errorf(holdfast.ENOTFOUND, "no such route"))
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.replaced {
		return len(b), nil // the mux's plain text, already replaced
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe wraps every request: request id, panic recovery, body limit,
// deadline (none for streaming exports), access log and metrics.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		info := &requestInfo{id: id}
		ctx := context.WithValue(r.Context(), infoKey, info)
		// A streaming export may run for minutes: it has no deadline, only
		// its stall timeout and the client's disconnect (see exportPath).
		// Other requests get the server's RequestTimeout, or the client's
		// Request-Timeout if sooner.
		if !exportPath(r.URL.Path) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, requestTimeout(r, s.cfg.RequestTimeout))
			defer cancel()
		}
		r = r.WithContext(ctx)
		limit := s.cfg.BodyLimit
		switch {
		case r.URL.Path == eventsPath:
			limit = max(limit, s.cfg.EventBodyLimit)
		case receiptPath(r):
			// One byte more than the limit, so that the upload's own check
			// (which reads one byte past it) is what refuses it.
			limit = max(limit, s.cfg.ReceiptBodyLimit+1)
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		rec := &recorder{ResponseWriter: w, s: s, r: r}
		info.rec = rec

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic", "request_id", id, "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					s.Error(rec, r, holdfast.Errorf(holdfast.EINTERNAL, "panic"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			s.metrics.observe(route, r.Method, rec.status, elapsed)
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			if info.shed {
				level = slog.LevelDebug
			}
			// Probes, scrapes and the console's polls come every second or so.
			if route == "GET /healthz" || route == "GET /metrics" || strings.HasPrefix(route, "GET /console") && rec.status < 500 {
				level = slog.LevelDebug
			}
			s.logger.LogAttrs(ctx, level, "request",
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("route", route), slog.Int("status", rec.status), slog.Int64("bytes", rec.written),
				slog.Duration("duration", elapsed), slog.String("tenant", info.tenant))
		}()
		next.ServeHTTP(rec, r)
	})
}
