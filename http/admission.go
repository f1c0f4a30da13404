package http

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/ratelimit"
)

// RateLimiter limits the requests of each tenant, whichever of its API
// keys they carry (see package ratelimit: ratelimit.Local in one process,
// ratelimit.Redis across replicas).
type RateLimiter interface {
	// Allow takes one request from key's allowance (the key is a tenant id).
	Allow(ctx context.Context, key string) (ratelimit.Decision, error)
	// Policy returns the limit, for the RateLimit-Policy header.
	Policy() ratelimit.Config
}

// RequestTimeoutHeader lets a client say how long it will wait, in whole
// milliseconds: the request's deadline is the sooner of that and the
// server's RequestTimeout, counted from when the server read the headers.
// A gateway that has already spent part of the client's budget sends what
// is left. 0 means the client has already given up, so the request is
// dropped before any work. A malformed value is ignored, and so is the
// header on streaming exports, which have no deadline (see exportPath).
const RequestTimeoutHeader = "Request-Timeout"

// requestTimeout returns the deadline to give r: the server's default, or
// the client's Request-Timeout if sooner.
func requestTimeout(r *http.Request, def time.Duration) time.Duration {
	v := r.Header.Get(RequestTimeoutHeader)
	if v == "" {
		return def
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return def
	}
	return min(def, time.Duration(ms)*time.Millisecond)
}

// routeClasses names the routes whose admission class is not the one their
// method implies (GET reads, other methods write; exports by exportPath).
var routeClasses = map[string]overload.Class{
	"PUT /v1/transfers/{id}/receipt": overload.Uploads,
}

// routeClass returns the admission class of a routed request.
func routeClass(r *http.Request) overload.Class {
	if c, ok := routeClasses[r.Pattern]; ok {
		return c
	}
	switch {
	case exportPath(r.URL.Path):
		return overload.Exports
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return overload.Reads
	}
	return overload.Writes
}

// admissionMetrics count what admission itself cannot see.
type admissionMetrics struct {
	rateLimitErrors prometheus.Counter
}

func newAdmissionMetrics(reg prometheus.Registerer) (*admissionMetrics, error) {
	m := &admissionMetrics{rateLimitErrors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_ratelimit_errors_total",
		Help: "Rate-limit checks that failed (Redis unreachable); the request was let through.",
	})}
	if reg != nil {
		if err := reg.Register(m.rateLimitErrors); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// dropExpired refuses, before any work, a request whose deadline has
// already passed (its Request-Timeout was 0 or it waited too long to be
// read): its client is gone or about to be. Only with admission control on.
func (s *Server) dropExpired(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.Context().Err(); err != nil && s.cfg.Admission != nil {
			s.cfg.Admission.CountShed(routeClass(r), overload.ReasonExpired)
			s.Error(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// protect admits an authenticated /v1 request: first the tenant's rate
// limit (429), then its route class's adaptive concurrency limit (503).
// Both refuse without touching the database. A request that ends in 503
// (a downstream queue full, a timeout) drops its permit instead of
// releasing it, which tells the limiter that capacity ran out.
func (s *Server) protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := routeClass(r)
		if s.cfg.RateLimiter != nil && !s.allowRate(w, r, class) {
			return
		}
		if s.cfg.Admission == nil || class == overload.Exports {
			next.ServeHTTP(w, r)
			return
		}
		p, err := s.cfg.Admission.Acquire(r.Context(), class)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		defer func() {
			if statusFrom(r.Context()) == http.StatusServiceUnavailable || r.Context().Err() != nil {
				p.Drop()
			} else {
				p.Release()
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// allowRate applies the tenant's rate limit and sets the RateLimit
// headers (draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy and
// RateLimit). It answers 429 itself and returns false when the tenant is
// over its limit. The limit is the tenant's, not the key's: a tenant can
// mint keys, and each must not bring an allowance of its own. If the
// limiter fails (Redis down) the request goes through: a rate limit is for
// fairness, and refusing everyone because Redis is away would turn its
// outage into ours.
func (s *Server) allowRate(w http.ResponseWriter, r *http.Request, class overload.Class) bool {
	d, err := s.cfg.RateLimiter.Allow(r.Context(), tenantFrom(r.Context()))
	if err != nil {
		s.admissionMetrics.rateLimitErrors.Inc()
		return true
	}
	hdr := w.Header()
	hdr.Set("RateLimit-Policy", s.rateLimitPolicy)
	hdr.Set("RateLimit", `"per-tenant";r=`+strconv.Itoa(d.Remaining)+";t="+strconv.FormatInt(ceilSeconds(d.Reset), 10))
	if d.Allowed {
		return true
	}
	hdr.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10))
	s.cfg.Admission.CountShed(class, overload.ReasonRateLimited)
	s.Error(w, r, holdfast.Errorf(ERATELIMITED, "the tenant's rate limit is exceeded; retry after Retry-After seconds"))
	return false
}

// rateLimitPolicyHeader renders a limit as RateLimit-Policy: a quota of
// Burst requests per the time a full bucket takes to refill.
func rateLimitPolicyHeader(c ratelimit.Config) string {
	window := max(1, int64(math.Ceil(float64(c.Burst)/c.Rate)))
	return `"per-tenant";q=` + strconv.Itoa(c.Burst) + ";w=" + strconv.FormatInt(window, 10)
}

// markShed notes for the access log that the request was refused by
// overload protection.
func markShed(ctx context.Context) {
	if info := infoFrom(ctx); info != nil {
		info.shed = true
	}
}

func ceilSeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }
