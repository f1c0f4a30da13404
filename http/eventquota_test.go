package http_test

import (
	"strings"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/ratelimit"
)

// A tenant past its event quota gets 429 with Retry-After and the
// RateLimit headers, and nothing of the refused batch is stored; a keyed
// refusal releases the key; another tenant's quota is untouched.
func TestEvents_QuotaPerTenant(t *testing.T) {
	t.Parallel()
	db := dbtest.MustOpenDB(t)
	l := apitest.MustEventLog(t, db)
	quota, err := ratelimit.NewQuota(ratelimit.QuotaConfig{Events: 5, Bytes: 1 << 20, Period: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := apitest.MustServeWith(t, db, l.Services, func(c *holdfasthttp.Config) { c.AdminToken = adminToken; c.EventQuota = quota })
	s := &eventServer{TestServer: &TestServer{Server: srv, DB: db}, log: l}
	c, other := s.MustTenant(t), s.MustTenant(t)

	r := c.Do(t, "POST", "/v1/events", clientEvents(3, "page.view", "")).MustStatus(t, 202)
	if got := r.Header.Get("RateLimit"); got != `"events";r=2;t=2160` {
		t.Errorf("RateLimit = %q, want 2 events left", got)
	}
	if got := r.Header.Get("RateLimit-Policy"); !strings.HasPrefix(got, `"events";q=5;w=3600`) {
		t.Errorf("RateLimit-Policy = %q", got)
	}
	for _, key := range []string{"", "k-1", "k-1"} { // the keyed refusal releases its key: the same again
		var headers []string
		if key != "" {
			headers = []string{"Idempotency-Key", key}
		}
		r = c.Do(t, "POST", "/v1/events", clientEvents(3, "page.view", ""), headers...).MustStatus(t, 429)
		if r.ProblemType(t) != "rate-limited" || r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit") == "" {
			t.Fatalf("past the quota (key %q): %s %v", key, r.Body, r.Header)
		}
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("a refusal was stored for key %q", key)
		}
	}
	if got := s.streamMsgs(t); got != 3 {
		t.Fatalf("the stream holds %d events, want the 3 within the quota", got)
	}
	other.Do(t, "POST", "/v1/events", clientEvents(5, "page.view", "")).MustStatus(t, 202)
}
