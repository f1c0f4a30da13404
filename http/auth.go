package http

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/overload"
)

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

// CheckAdminToken checks a token an operator typed (the console's login)
// as requireAdmin checks a bearer token: an address that failed too often
// gets EAUTHTHROTTLED without a comparison, a wrong token EUNAUTHORIZED
// (and counts against the address).
func (s *Server) CheckAdminToken(r *http.Request, tok string) error {
	addr := clientAddress(r)
	if wait := s.authThrottle.retryAfter(addr); wait > 0 {
		s.cfg.Admission.CountShed(overload.Auth, overload.ReasonAuthThrottled)
		return holdfast.Errorf(EAUTHTHROTTLED, "too many failed logins from this address; retry in %d seconds", max(1, ceilSeconds(wait)))
	}
	if !s.adminToken(tok) {
		s.authThrottle.fail(addr)
		return holdfast.Errorf(holdfast.EUNAUTHORIZED, "wrong token")
	}
	return nil
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
	max int // entries held at most; 0: maxAuthEntries
	mu  sync.Mutex
	m   map[[32]byte]authEntry
}

// maxAuthEntries bounds the cache: a flood of distinct (unknown) keys
// empties it when it is full rather than growing it; the known keys are
// then looked up once more each.
const maxAuthEntries = 100_000

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
		if c.m == nil || len(c.m) >= cmp.Or(c.max, maxAuthEntries) {
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
