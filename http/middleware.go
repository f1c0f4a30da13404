package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/overload"
)

type ctxKey int

const infoKey ctxKey = 0

// requestInfo is a request's state in the middleware: its id, set by
// observe; its tenant, set by authentication; whether overload protection
// shed it. One value in the request's context, filled in as the request
// goes through, instead of a context (and a copy of the request) per
// middleware: a transfer request is the hot path, and each copy is
// garbage (docs/decisions/0011-one-request-state-in-the-context.md).
type requestInfo struct {
	id     string
	tenant string
	shed   bool // refused by overload protection: logged at debug, a flood of them must stay cheap
}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey).(*requestInfo)
	return info
}

// authenticate records that the request is authenticated as tenant. It is
// called before the handlers the request goes on to, which read it.
func authenticate(r *http.Request, tenant string) *http.Request {
	if info := infoFrom(r.Context()); info != nil {
		info.tenant = tenant
		return r
	}
	// Outside observe (a handler tested alone): a context of its own.
	return r.WithContext(context.WithValue(r.Context(), infoKey, &requestInfo{tenant: tenant}))
}

func requestIDFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// tenantFrom returns the authenticated tenant of the request.
func tenantFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.tenant
	}
	return ""
}

// recorder remembers what a handler wrote, for logs and metrics.
type recorder struct {
	http.ResponseWriter
	status  int
	written int64
}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// validRequestID accepts a caller's X-Request-Id if it is short and printable.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

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
		rec := &recorder{ResponseWriter: w}

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
			if route == "GET /healthz" || route == "GET /metrics" {
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

// problemsForUnrouted answers unknown paths and wrong methods with problem
// documents instead of the mux's plain text, routing each request once: the
// mux's own 404 and 405 handlers (a request it found no pattern for) are
// replaced as they start to write.
func (s *Server) problemsForUnrouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&unroutedWriter{ResponseWriter: w, s: s, r: r}, r)
	})
}

// unroutedWriter turns the mux's plain-text 404 and 405 into problems.
type unroutedWriter struct {
	http.ResponseWriter
	s        *Server
	r        *http.Request // the mux sets its Pattern before calling a handler
	replaced bool
}

func (u *unroutedWriter) WriteHeader(status int) {
	if u.replaced || u.r.Pattern != "" || status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		u.ResponseWriter.WriteHeader(status)
		return
	}
	u.replaced = true
	if status == http.StatusMethodNotAllowed { // the mux has set Allow
		u.s.Error(u.ResponseWriter, u.r, holdfast.Errorf(EMETHOD, "%s is not allowed on %s", u.r.Method, u.r.URL.Path))
		return
	}
	u.s.Error(u.ResponseWriter, u.r, holdfast.Errorf(holdfast.ENOTFOUND, "no such route"))
}

func (u *unroutedWriter) Write(b []byte) (int, error) {
	if u.replaced {
		return len(b), nil // the mux's plain text, already replaced
	}
	return u.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (u *unroutedWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// adminTenant scopes the admin's idempotency keys.
const adminTenant = "00000000-0000-0000-0000-000000000000"

// requireAdmin lets through requests with the admin token. Failed
// attempts count against the client address (see authThrottle).
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := clientAddress(r)
		if wait := s.authThrottle.retryAfter(addr); wait > 0 {
			s.throttled(w, r, wait)
			return
		}
		if !s.adminToken(bearer(r)) {
			s.authThrottle.fail(addr)
			s.Error(w, r, holdfast.Errorf(holdfast.EUNAUTHORIZED, "a valid admin token is required"))
			return
		}
		next.ServeHTTP(w, authenticate(r, adminTenant))
	})
}

// adminToken reports whether tok is the admin token. It compares hashes,
// so that the time taken says nothing about the token, its length included.
func (s *Server) adminToken(tok string) bool {
	if s.cfg.AdminToken == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.AdminToken))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// requireTenant authenticates an API key, cheapest check first: a key
// verified within the cache's TTL goes through; a client address that has
// failed too often is refused (429); a key that cannot be a secret is
// refused without a lookup; a key known to be unknown is refused from the
// cache; only then is the key looked up in the database, under admission
// control (its own class), so that a flood of made-up keys is shed instead
// of queueing for database connections. Every 401 counts against the
// client address.
func (s *Server) requireTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		wellFormed := holdfast.WellFormedAPIKey(tok)
		tenant, known := "", false
		if wellFormed {
			tenant, known = s.auth.cached(tok)
			if known && tenant != "" {
				next.ServeHTTP(w, authenticate(r, tenant))
				return
			}
		}
		addr := clientAddress(r)
		if wait := s.authThrottle.retryAfter(addr); wait > 0 {
			s.throttled(w, r, wait)
			return
		}
		var err error
		switch {
		case tok == "":
			err = holdfast.Errorf(holdfast.EUNAUTHORIZED, "an API key is required: Authorization: Bearer <key>")
		case !wellFormed || known:
			err = errUnknownKey
		default:
			tenant, err = s.lookupKey(r, tok)
		}
		if err != nil {
			if holdfast.ErrorCode(err) == holdfast.EUNAUTHORIZED {
				s.authThrottle.fail(addr)
			}
			s.Error(w, r, err)
			return
		}
		next.ServeHTTP(w, authenticate(r, tenant))
	})
}

// lookupKey asks the database for a well-formed key's tenant, admitted by
// the Auth class; it returns EOVERLOADED when that class is full.
func (s *Server) lookupKey(r *http.Request, tok string) (string, error) {
	p, err := s.cfg.Admission.Acquire(r.Context(), overload.Auth)
	if err != nil {
		return "", err
	}
	tenant, err := s.auth.verify(r.Context(), s.TenantService, tok)
	if err != nil && holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
		p.Drop() // the database did not answer in time: a congestion signal
	} else {
		p.Release()
	}
	return tenant, err
}

// throttled answers a client address that failed to authenticate too often.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(wait)), 10))
	s.cfg.Admission.CountShed(overload.Auth, overload.ReasonAuthThrottled)
	s.Error(w, r, holdfast.Errorf(EAUTHTHROTTLED, "too many failed authentications from this address; retry after Retry-After seconds"))
}

// authCache remembers verified keys for a short TTL, so a request does not
// cost a database round trip just to authenticate.
type authCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[[32]byte]authEntry
}

type authEntry struct {
	tenant  string
	expires time.Time
}

// cached returns what the cache knows of secret: known is false when it
// must be looked up; tenant is "" for a key known to be unknown.
func (c *authCache) cached(secret string) (tenant string, known bool) {
	if c.ttl < 0 {
		return "", false
	}
	h := sha256.Sum256([]byte(secret))
	c.mu.Lock()
	e, ok := c.m[h]
	c.mu.Unlock()
	if !ok || !time.Now().Before(e.expires) {
		return "", false
	}
	return e.tenant, true
}

// verify looks secret up in the database and caches the answer.
func (c *authCache) verify(ctx context.Context, svc holdfast.TenantService, secret string) (string, error) {
	tenant, err := svc.Authenticate(ctx, secret)
	if err != nil && holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
		return "", err
	}
	if c.ttl >= 0 {
		// An unknown key is remembered too (as tenant ""): a client retrying
		// with a wrong key, or a flood of them, must not cost a database
		// lookup per request. A secret is random and shown once at creation,
		// so no request can name a key before it exists; a revoked one is
		// refused by the database, then from here.
		h := sha256.Sum256([]byte(secret))
		c.mu.Lock()
		if c.m == nil || len(c.m) > 100_000 {
			c.m = make(map[[32]byte]authEntry)
		}
		c.m[h] = authEntry{tenant, time.Now().Add(c.ttl)}
		c.mu.Unlock()
	}
	if err != nil {
		return "", errUnknownKey
	}
	return tenant, nil
}

// errUnknownKey answers a key the database does not know or has revoked.
var errUnknownKey = holdfast.Errorf(holdfast.EUNAUTHORIZED, "the API key is unknown or revoked")

// forgetTenant drops a tenant's cached keys (after a revocation).
func (c *authCache) forgetTenant(tenant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.tenant == tenant {
			delete(c.m, k)
		}
	}
}

// knownQuery refuses, with 400 and before anything else, a request whose
// query string does not parse, names a parameter other than the route's
// params, or names one twice: as with an unknown JSON member, a misspelt
// ?limt=10 or a stray ?limit= on an export would otherwise be ignored and
// its caller never learn. The handler checks the values.
func (s *Server) knownQuery(h http.Handler, params []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if err := checkQuery(r.URL.RawQuery, params); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// checkQuery returns EINVALID unless the query string parses and names
// each parameter it has once, and only the ones in params.
func checkQuery(raw string, params []string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return holdfast.Errorf(holdfast.EINVALID, "the query string is malformed")
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // name the same parameter every time
	for _, name := range names {
		if !slices.Contains(params, name) {
			takes := "takes no query parameters"
			if len(params) > 0 {
				takes = "takes only " + strings.Join(params, ", ")
			}
			return holdfast.Errorf(holdfast.EINVALID, "unknown query parameter %q: this route %s", truncate(name, 64), takes)
		}
		if len(q[name]) > 1 {
			return holdfast.Errorf(holdfast.EINVALID, "query parameter %s is given more than once", name)
		}
	}
	return nil
}

// truncate returns s cut to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
