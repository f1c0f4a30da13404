package http_test

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/postgres"
)

// eventServer is a server with a running event log.
type eventServer struct {
	*TestServer
	log *apitest.EventLog
}

func mustEventServer(t *testing.T) *eventServer {
	t.Helper()
	db := dbtest.MustOpenDB(t)
	l := apitest.MustEventLog(t, db)
	s := apitest.MustServeWith(t, db, l.Services, func(c *holdfasthttp.Config) { c.AdminToken = adminToken })
	return &eventServer{TestServer: &TestServer{Server: s, DB: db}, log: l}
}

func (s *eventServer) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	st, err := s.log.NATS.JS.Stream(t.Context(), s.log.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func clientEvents(n int, typ string, props string) map[string]any {
	evs := make([]any, n)
	for i := range evs {
		e := map[string]any{"type": typ}
		if props != "" {
			e["properties"] = rawJSON(props)
		}
		evs[i] = e
	}
	return map[string]any{"events": evs}
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// Client events are stored (202 once the log holds them), consumed by the
// audit and analytics groups, and readable through the API.
func TestEvents_IngestAndRead(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	c := s.MustTenant(t)
	other := s.MustTenant(t)

	r := c.Do(t, "POST", "/v1/events", clientEvents(300, "payment.attempted", `{"amount":250,"currency":"EUR","card":"visa"}`)).MustStatus(t, 202)
	m := r.JSON(t)
	if m["accepted"].(float64) != 300 || len(m["ids"].([]any)) != 300 {
		t.Fatalf("202 body = %.200s", r.Body)
	}
	c.Do(t, "POST", "/v1/events", clientEvents(2, "page.view", "")).MustStatus(t, 202)

	eventually(t, "analytics sums the attempts", func() bool {
		m := c.Do(t, "GET", "/v1/analytics/rollups?type=payment.attempted", nil).MustStatus(t, 200).JSON(t)
		var n float64
		var sum string
		for _, x := range m["data"].([]any) {
			x := x.(map[string]any)
			n += x["count"].(float64)
			sum = x["amount_sum"].(string)
		}
		return n == 300 && sum == "75000"
	})
	eventually(t, "audit holds all 302 events", func() bool {
		total := 0
		for cursor := ""; ; {
			m := c.Do(t, "GET", "/v1/audit?limit=500&cursor="+cursor, nil).MustStatus(t, 200).JSON(t)
			total += len(m["data"].([]any))
			next, _ := m["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		return total == 302
	})
	v := c.Do(t, "GET", "/v1/audit/verify", nil).MustStatus(t, 200).JSON(t)
	if v["ok"] != true || v["records"].(float64) != 302 {
		t.Fatalf("verify = %v", v)
	}
	// Another tenant sees none of it.
	if m := other.Do(t, "GET", "/v1/audit", nil).MustStatus(t, 200).JSON(t); len(m["data"].([]any)) != 0 {
		t.Fatalf("another tenant's audit: %v", m)
	}
	if m := other.Do(t, "GET", "/v1/analytics/rollups", nil).MustStatus(t, 200).JSON(t); len(m["data"].([]any)) != 0 {
		t.Fatalf("another tenant's rollups: %v", m)
	}
}

// Bad batches get a 4xx problem and put nothing in the log.
func TestEvents_BadInputStoresNothing(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	c := s.MustTenant(t)
	big := `{"pad":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		name   string
		body   any
		status int
		typ    string
	}{
		{"empty batch", map[string]any{"events": []any{}}, 400, "invalid-request"},
		{"no events member", map[string]any{}, 400, "invalid-request"},
		{"too many", clientEvents(1001, "a.b", ""), 400, "invalid-request"},
		{"reserved type", clientEvents(1, "transfer.posted", ""), 400, "invalid-request"},
		{"bad type", clientEvents(1, "Has Space", ""), 400, "invalid-request"},
		{"wildcard type", clientEvents(1, "a.>", ""), 400, "invalid-request"},
		{"properties not an object", clientEvents(1, "a.b", `[1,2]`), 400, "invalid-request"},
		{"properties too large", clientEvents(1, "a.b", big), 400, "invalid-request"},
		{"unknown member", map[string]any{"events": []any{map[string]any{"type": "a.b", "colour": 1}}}, 400, "invalid-request"},
		{"bad id", map[string]any{"events": []any{map[string]any{"type": "a.b", "id": "nope"}}}, 400, "invalid-request"},
		{"far future", map[string]any{"events": []any{map[string]any{"type": "a.b", "occurred_at": "2999-01-01T00:00:00Z"}}}, 400, "invalid-request"},
		{"body too large", clientEvents(1000, "a.b", `{"pad":"`+strings.Repeat("y", 4500)+`"}`), 413, "payload-too-large"},
	}
	for _, tc := range cases {
		r := c.Do(t, "POST", "/v1/events", tc.body)
		if r.Status != tc.status || !strings.HasSuffix(r.ProblemType(t), tc.typ) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.typ)
		}
	}
	// One bad event spoils its batch: nothing of it is stored.
	mixed := clientEvents(3, "a.b", "")
	mixed["events"].([]any)[2] = map[string]any{"type": "account.created"}
	if r := c.Do(t, "POST", "/v1/events", mixed); r.Status != 400 || !strings.Contains(string(r.Body), "events[2]") {
		t.Errorf("mixed batch: %d %s, want 400 naming events[2]", r.Status, r.Body)
	}
	before := s.streamMsgs(t)
	c.Do(t, "POST", "/v1/events", clientEvents(1, "ok.event", "")).MustStatus(t, 202)
	if after := s.streamMsgs(t); after != before+1 {
		t.Fatalf("stream went from %d to %d for one good event", before, after)
	}
}

// A retry with the same Idempotency-Key replays the answer and stores
// nothing again; the same key with another body is refused.
func TestEvents_IdempotencyKey(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	c := s.MustTenant(t)
	body := clientEvents(5, "checkout.started", `{"cart":3}`)
	first := c.Do(t, "POST", "/v1/events", body, "Idempotency-Key", "batch-1").MustStatus(t, 202)
	before := s.streamMsgs(t)
	again := c.Do(t, "POST", "/v1/events", body, "Idempotency-Key", "batch-1").MustStatus(t, 202)
	if string(first.Body) != string(again.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %s (replayed %q), first %s", again.Body, again.Header.Get("Idempotent-Replayed"), first.Body)
	}
	if after := s.streamMsgs(t); after != before {
		t.Fatalf("the retry stored events: %d → %d", before, after)
	}
	r := c.Do(t, "POST", "/v1/events", clientEvents(5, "checkout.started", `{"cart":4}`), "Idempotency-Key", "batch-1")
	if r.Status != 422 {
		t.Fatalf("same key, other body: %d %s", r.Status, r.Body)
	}
}

// When the stream is full the producer gets 503 with Retry-After.
func TestEvents_FullStreamAnswers503(t *testing.T) {
	t.Parallel()
	db := dbtest.MustOpenDB(t)
	l := apitest.MustEventLog(t, db)
	small := events.StreamConfig{Name: "small", MaxBytes: 1 << 20}
	if _, err := events.EnsureStream(t.Context(), l.NATS.JS, small); err != nil {
		t.Fatal(err)
	}
	p, err := events.NewPublisher(l.NATS.NC, events.PublisherConfig{Stream: small})
	if err != nil {
		t.Fatal(err)
	}
	srv := apitest.MustServeWith(t, db, func(s *holdfasthttp.Server) { l.Services(s); s.EventService = p },
		func(c *holdfasthttp.Config) { c.AdminToken = adminToken })
	ts := &TestServer{Server: srv, DB: db}
	c := ts.MustTenant(t)
	body := clientEvents(100, "page.view", `{"pad":"`+strings.Repeat("z", 3000)+`"}`)
	for i := 0; i < 20; i++ {
		r := c.Do(t, "POST", "/v1/events", body)
		if r.Status == 202 {
			continue
		}
		if r.Status != 503 || r.Header.Get("Retry-After") == "" || !strings.HasSuffix(r.ProblemType(t), "overloaded") {
			t.Fatalf("full stream: %d %v %s", r.Status, r.Header, r.Body)
		}
		return
	}
	t.Fatal("2,000 events of 3 KB went into a 1 MiB stream without a 503")
}

// The admin API shows the groups' lag and pauses and resumes them.
func TestAdminConsumers(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	admin := s.Admin()
	c := s.MustTenant(t)

	r := admin.Do(t, "POST", "/v1/admin/consumers/audit/pause", map[string]any{"reason": "maintenance"}).MustStatus(t, 200)
	if m := r.JSON(t); m["paused"] != true || m["pause_reason"] != "maintenance" {
		t.Fatalf("pause: %s", r.Body)
	}
	eventually(t, "the audit worker sees the pause", func() bool { return s.log.WorkerSeesPause(t, postgres.AuditGroup) })
	c.Do(t, "POST", "/v1/events", clientEvents(10, "a.b", "")).MustStatus(t, 202)
	eventually(t, "the audit group shows its lag", func() bool {
		m := admin.Do(t, "GET", "/v1/admin/consumers", nil).MustStatus(t, 200).JSON(t)
		for _, g := range m["data"].([]any) {
			g := g.(map[string]any)
			if g["name"] == "audit" {
				return g["pending"].(float64) >= 10 && g["lag_messages"].(float64) >= 10 && g["paused"] == true
			}
		}
		return false
	})
	admin.Do(t, "POST", "/v1/admin/consumers/audit/resume", nil).MustStatus(t, 200)
	eventually(t, "the audit group drains", func() bool {
		m := admin.Do(t, "GET", "/v1/admin/consumers", nil).MustStatus(t, 200).JSON(t)
		for _, g := range m["data"].([]any) {
			g := g.(map[string]any)
			if g["name"] == "audit" {
				return g["lag_messages"].(float64) == 0 && g["paused"] == false
			}
		}
		return false
	})

	for _, tc := range []struct {
		path string
		body any
		want int
	}{
		{"/v1/admin/consumers/nope/pause", nil, 404},
		{"/v1/admin/consumers/audit/pause", map[string]any{"for": "forever"}, 400},
		{"/v1/admin/consumers/audit/pause", map[string]any{"for": "1s", "until": "2030-01-01T00:00:00Z"}, 400},
		{"/v1/admin/consumers/audit/pause", map[string]any{"for": "-1s"}, 400},
	} {
		if r := admin.Do(t, "POST", tc.path, tc.body); r.Status != tc.want {
			t.Errorf("POST %s %v: %d %s, want %d", tc.path, tc.body, r.Status, r.Body, tc.want)
		}
	}
	timed := admin.Do(t, "POST", "/v1/admin/consumers/analytics/pause", map[string]any{"for": "1h"}).MustStatus(t, 200).JSON(t)
	if timed["paused_until"] == nil {
		t.Fatalf("a timed pause shows no paused_until: %v", timed)
	}
	// Tenants cannot steer consumers.
	if r := c.Do(t, "GET", "/v1/admin/consumers", nil); r.Status != 401 {
		t.Fatalf("a tenant listed consumers: %d", r.Status)
	}
}

// The event routes answer as openapi.json says.
func TestOpenAPIEventResponses(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	call := loadOpenAPI(t).caller(t)
	c, admin := s.MustTenant(t), s.Admin()
	batch := clientEvents(3, "payment.attempted", `{"amount":5,"currency":"USD"}`)
	call(c, "POST", "/v1/events", "/v1/events", batch, "Idempotency-Key", "e1").MustStatus(t, 202)
	call(c, "POST", "/v1/events", "/v1/events", batch, "Idempotency-Key", "e1").MustStatus(t, 202)
	call(c, "POST", "/v1/events", "/v1/events", clientEvents(1, "x.y", ""), "Idempotency-Key", "e1").MustStatus(t, 422)
	call(c, "POST", "/v1/events", "/v1/events", clientEvents(1, "account.x", "")).MustStatus(t, 400)
	call(&Client{URL: s.URL()}, "POST", "/v1/events", "/v1/events", batch).MustStatus(t, 401)
	eventually(t, "rollups appear", func() bool {
		m := call(c, "GET", "/v1/analytics/rollups", "/v1/analytics/rollups?type=payment.attempted", nil).MustStatus(t, 200).JSON(t)
		return len(m["data"].([]any)) > 0
	})
	call(c, "GET", "/v1/analytics/rollups", "/v1/analytics/rollups?from=yesterday", nil).MustStatus(t, 400)
	eventually(t, "audit records appear", func() bool {
		m := call(c, "GET", "/v1/audit", "/v1/audit?limit=1", nil).MustStatus(t, 200).JSON(t)
		return len(m["data"].([]any)) == 1 && m["next_cursor"] != nil
	})
	call(c, "GET", "/v1/audit", "/v1/audit?cursor=x", nil).MustStatus(t, 400)
	v := call(c, "GET", "/v1/audit/verify", "/v1/audit/verify?limit=1", nil).MustStatus(t, 200).JSON(t)
	if v["ok"] != true || v["records"].(float64) != 1 || v["more"] != true || v["next_cursor"] != "1" {
		t.Fatalf("verify one record = %v", v)
	}
	v = call(c, "GET", "/v1/audit/verify", "/v1/audit/verify?from=start&limit=1", nil).MustStatus(t, 200).JSON(t)
	call(c, "GET", "/v1/audit/verify", "/v1/audit/verify?cursor="+v["next_cursor"].(string), nil).MustStatus(t, 200)
	for _, bad := range []string{"from=middle", "limit=0", "limit=10001", "cursor=x", "cursor=99", "cursor=1&from=start"} {
		call(c, "GET", "/v1/audit/verify", "/v1/audit/verify?"+bad, nil).MustStatus(t, 400)
	}
	call(admin, "GET", "/v1/admin/consumers", "/v1/admin/consumers", nil).MustStatus(t, 200)
	call(admin, "POST", "/v1/admin/consumers/{name}/pause", "/v1/admin/consumers/audit/pause", map[string]any{"for": "10m", "reason": "test"}).MustStatus(t, 200)
	call(admin, "POST", "/v1/admin/consumers/{name}/pause", "/v1/admin/consumers/audit/pause", map[string]any{"for": "10 minutes"}).MustStatus(t, 400)
	call(admin, "POST", "/v1/admin/consumers/{name}/resume", "/v1/admin/consumers/audit/resume", nil).MustStatus(t, 200)
	call(admin, "POST", "/v1/admin/consumers/{name}/resume", "/v1/admin/consumers/nope/resume", nil).MustStatus(t, 404)
	call(c, "GET", "/v1/admin/consumers", "/v1/admin/consumers", nil).MustStatus(t, 401)
}
