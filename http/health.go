package http

import (
	"context"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// handleHealthz is liveness: it answers from memory, touching no database,
// pool or lock, so it stays fast however busy the service is.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// handleReadyz is readiness: the dependencies answer and the server is not draining.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "draining"))
		return
	}
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.logger.Warn("not ready", "err", err)
			s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "not ready: a dependency is not answering"))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ready"}` + "\n"))
}
