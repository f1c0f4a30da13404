package http_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
)

// mustServeCounting starts a server (with the admin token) whose key
// lookups are counted.
func mustServeCounting(tb testing.TB, cfg ...func(*holdfasthttp.Config)) (*TestServer, *holdfasthttp.CountingTenants) {
	tb.Helper()
	db := dbtest.MustOpenDB(tb)
	counter := &holdfasthttp.CountingTenants{}
	count := func(s *holdfasthttp.Server) {
		counter.TenantService = s.TenantService
		s.TenantService = counter
	}
	withAdmin := func(c *holdfasthttp.Config) { c.AdminToken = adminToken }
	s := apitest.MustServeWith(tb, db, count, append([]func(*holdfasthttp.Config){withAdmin}, cfg...)...)
	return &TestServer{Server: s, DB: db}, counter
}

// from returns a copy of c whose connections come from the loopback
// address ip (any of 127.0.0.0/8), so that a test can play several client
// addresses.
func from(c *Client, ip string) *Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &Client{URL: c.URL, Key: c.Key, Tenant: c.Tenant, HTTP: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
}

// wellFormedUnknownKey has the shape of a secret (hf_ and 32 base32
// characters) and names no key.
var wellFormedUnknownKey = "hf_" + strings.Repeat("A", 32)

// TestAuth_MalformedKeyIsRefusedWithoutALookup: a key that cannot be a
// secret (wrong prefix, length or alphabet) gets 401 without a database
// lookup; a well-formed unknown key costs one.
func TestAuth_MalformedKeyIsRefusedWithoutALookup(t *testing.T) {
	t.Parallel()
	s, counter := mustServeCounting(t)
	valid := s.MustTenant(t).Key
	if !strings.HasPrefix(valid, "hf_") || len(valid) != len(wellFormedUnknownKey) {
		t.Fatalf("secret %q does not have the shape the test assumes", valid)
	}
	counter.Lookups().Store(0)
	malformed := []string{
		"garbage",
		"hf_",
		valid[:len(valid)-1],                   // one character short
		valid + "A",                            // one too many
		"HF_" + valid[3:],                      // the prefix is lower case
		"hf-" + valid[3:],                      // another prefix
		"hf_" + strings.ToLower(valid[3:]),     // base32 is upper case
		"hf_" + strings.Repeat("A", 31) + "1",  // not in the base32 alphabet
		"hf_" + strings.Repeat("A", 31) + "=",  // no padding
		"hf_" + strings.Repeat("A", 30) + "é",  // not ASCII, same byte length
		"hf_" + strings.Repeat("A", 32) + " x", // trailing text
	}
	for _, key := range malformed {
		r := (&Client{URL: s.URL(), Key: key}).Do(t, "GET", "/v1/accounts", nil)
		mustProblem(t, r, 401, unauthorized)
	}
	if n := counter.Lookups().Load(); n != 0 {
		t.Fatalf("%d database lookups for %d malformed keys, want 0", n, len(malformed))
	}
	mustProblem(t, (&Client{URL: s.URL(), Key: wellFormedUnknownKey}).Do(t, "GET", "/v1/accounts", nil), 401, unauthorized)
	if n := counter.Lookups().Load(); n != 1 {
		t.Fatalf("%d database lookups for one well-formed unknown key, want 1", n)
	}
}

// mustThrottled fails tb unless r is a 429 authentication-throttled
// problem with a Retry-After of whole seconds.
func mustThrottled(tb testing.TB, r *Response) {
	tb.Helper()
	mustProblem(tb, r, 429, "authentication-throttled")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		tb.Fatalf("Retry-After %q on a throttled authentication, want whole seconds", r.Header.Get("Retry-After"))
	}
}

// TestAuth_AFailingAddressIsThrottled: a client address that keeps
// failing to authenticate gets 429 with Retry-After, without a database
// lookup, for tenant and admin routes alike; a key it has already proven
// (cached) still works from there, and other addresses authenticate and
// fail on their own budgets.
func TestAuth_AFailingAddressIsThrottled(t *testing.T) {
	t.Parallel()
	s, counter := mustServeCounting(t, func(c *holdfasthttp.Config) {
		c.AuthFailureBurst, c.AuthFailureRate = 3, 0.001 // one failure back per 1000 s
		c.AuthCacheTTL = time.Hour
	})
	tenant := s.MustTenant(t)
	tenant.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200) // now cached

	attacker := from(&Client{URL: s.URL(), Key: wellFormedUnknownKey}, "127.0.0.2")
	for i := range 3 {
		attacker.Key = wellFormedUnknownKey[:len(wellFormedUnknownKey)-1] + string(rune('B'+i))
		mustProblem(t, attacker.Do(t, "GET", "/v1/accounts", nil), 401, unauthorized)
	}
	before := counter.Lookups().Load()
	spec := loadOpenAPI(t)
	attacker.Key = wellFormedUnknownKey
	r := attacker.Do(t, "GET", "/v1/accounts", nil)
	mustThrottled(t, r)
	spec.checkResponse(t, "GET", "/v1/accounts", r)
	attacker.Key = "garbage"
	mustThrottled(t, attacker.Do(t, "GET", "/v1/accounts", nil))
	attacker.Key = adminToken
	r = attacker.Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "throttled"})
	mustThrottled(t, r)
	spec.checkResponse(t, "POST", "/v1/admin/tenants", r)
	if n := counter.Lookups().Load() - before; n != 0 {
		t.Fatalf("%d database lookups for throttled requests, want 0", n)
	}
	from(tenant, "127.0.0.2").Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)

	other := from(tenant, "127.0.0.3")
	other.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	from(s.Admin(), "127.0.0.3").Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "other"}).MustStatus(t, 201)
	other.Key = wellFormedUnknownKey
	mustProblem(t, other.Do(t, "GET", "/v1/accounts", nil), 401, unauthorized)
}

// TestAuth_AdminFailuresAreThrottled: wrong admin tokens count against the
// address like wrong API keys.
func TestAuth_AdminFailuresAreThrottled(t *testing.T) {
	t.Parallel()
	s, _ := mustServeCounting(t, func(c *holdfasthttp.Config) { c.AuthFailureBurst, c.AuthFailureRate = 2, 0.001 })
	guesser := from(&Client{URL: s.URL(), Key: strings.Repeat("x", len(adminToken))}, "127.0.0.4")
	for range 2 {
		mustProblem(t, guesser.Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "guess"}), 401, unauthorized)
	}
	mustThrottled(t, guesser.Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "guess"}))
	guesser.Key = adminToken // even the right token: the address is throttled
	mustThrottled(t, guesser.Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "guess"}))
	from(s.Admin(), "127.0.0.5").Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "operator"}).MustStatus(t, 201)
}

// TestAuth_LookupIsUnderAdmission: a key not in the authentication cache
// is looked up only when the auth class admits it (503 and no lookup when
// it is full); a cached key needs no admission.
func TestAuth_LookupIsUnderAdmission(t *testing.T) {
	t.Parallel()
	adm := mustAdmission(t, 1)
	s, counter := mustServeCounting(t, func(c *holdfasthttp.Config) {
		c.Admission = adm
		c.AuthCacheTTL = time.Hour
	})
	cached := s.MustTenant(t)
	cached.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	k, err := postgres.NewTenantService(s.DB).CreateAPIKey(context.Background(), cached.Tenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	uncached := &Client{URL: s.URL(), Key: k.Secret}

	p, err := adm.Acquire(context.Background(), overload.Auth)
	if err != nil {
		t.Fatal(err)
	}
	before := counter.Lookups().Load()
	r := uncached.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 503)
	if got := r.ProblemType(t); got != "overloaded" {
		t.Fatalf("problem type %s, want overloaded", got)
	}
	if n := counter.Lookups().Load() - before; n != 0 {
		t.Fatalf("%d lookups while the auth class was full, want 0", n)
	}
	cached.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	p.Release()
	uncached.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	if got := adm.Limiter(overload.Auth).InFlight(); got != 0 {
		t.Fatalf("%d auth permits held after the requests, want 0", got)
	}
}

// TestAuth_ConsoleLoginsShareTheAdminThrottle: the console's logins
// (CheckAdminToken) count against the address like wrong bearer tokens;
// once throttled, even the right token is refused without a comparison.
func TestAuth_ConsoleLoginsShareTheAdminThrottle(t *testing.T) {
	t.Parallel()
	s, err := holdfasthttp.NewServer(holdfasthttp.Config{AdminToken: adminToken, AuthFailureBurst: 2, AuthFailureRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	login := func(addr, tok string) string {
		r, _ := http.NewRequest("POST", "/console/login", nil)
		r.RemoteAddr = addr + ":40000"
		return holdfast.ErrorCode(s.CheckAdminToken(r, tok))
	}
	if got := login("127.0.0.9", adminToken); got != "" {
		t.Fatalf("the right token: %q", got)
	}
	for range 2 {
		if got := login("127.0.0.9", "wrong"); got != holdfast.EUNAUTHORIZED {
			t.Fatalf("a wrong token: %q", got)
		}
	}
	if got := login("127.0.0.9", adminToken); got != holdfasthttp.EAUTHTHROTTLED {
		t.Fatalf("the right token from a throttled address: %q", got)
	}
	if got := login("127.0.0.10", adminToken); got != "" {
		t.Fatalf("another address: %q", got)
	}
}
