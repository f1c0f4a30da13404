package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/postgres"
)

// mustFanout writes one event of the tenant as the webhooks consumer group
// would, and returns its id (the message id).
func mustFanout(tb testing.TB, db *postgres.DB, tenant, typ string) string {
	tb.Helper()
	ctx := context.Background()
	if _, err := postgres.NewConsumerStore(db).EnsureGroup(ctx, postgres.WebhookGroup, events.DefaultStream, ""); err != nil {
		tb.Fatal(err)
	}
	var seq int64
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) + 1 FROM consumer_applied").Scan(&seq); err != nil {
		tb.Fatal(err)
	}
	ev := holdfast.Event{ID: uuid.NewString(), Type: typ, Version: 1, Source: "ledger", TenantID: tenant,
		OccurredAt: time.Now().UTC(), Data: json.RawMessage(`{}`)}
	if err := postgres.NewWebhookStore(db).Fanout(ctx, []holdfast.EventDelivery{{Seq: uint64(seq), Event: ev}}); err != nil {
		tb.Fatal(err)
	}
	return ev.ID
}

// TestOpenAPIResponses_Webhooks drives every webhook operation, checking
// each response against the document.
func TestOpenAPIResponses_Webhooks(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	call := loadOpenAPI(t).caller(t)
	c := s.MustTenant(t)

	body := map[string]any{"url": "https://example.com/hooks", "event_types": []string{"transfer.posted"}, "description": "billing"}
	created := call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", body, "Idempotency-Key", "ep-1").MustStatus(t, 201)
	ep := created.JSON(t)
	id, secret := ep["id"].(string), ep["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || ep["state"] != "healthy" {
		t.Fatalf("created: %s", created.Body)
	}
	replay := call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", body, "Idempotency-Key", "ep-1").MustStatus(t, 201)
	if bytes.Contains(replay.Body, []byte(secret)) || replay.JSON(t)["secret_redacted"] != true || replay.JSON(t)["id"] != id {
		t.Fatalf("the replay shows the secret, or another endpoint: %s", replay.Body)
	}
	// No secret at rest in plaintext: not in the endpoint's row, not in the stored outcome.
	var rows int
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM webhook_endpoints
			WHERE position(convert_to($1, 'UTF8') in secret_sealed) > 0 OR position(convert_to($1, 'UTF8') in coalesce(previous_sealed, '')) > 0)
		+ (SELECT count(*) FROM idempotency_keys WHERE outcome::text LIKE '%' || $1 || '%')`, secret).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("the secret is stored in plaintext in %d rows", rows)
	}
	call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", map[string]any{"url": "ftp://example.com"}).MustStatus(t, 400)
	call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", map[string]any{"url": "https://example.com", "event_types": []string{"Bad Type"}}).MustStatus(t, 400)
	call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", map[string]any{"url": "https://u:p@example.com"}).MustStatus(t, 400)
	call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", map[string]any{"url": "https://example.com", "x": 1}).MustStatus(t, 400)
	call(c, "POST", "/v1/webhook-endpoints", "/v1/webhook-endpoints", `{"url":"https://example.com"}`, "Content-Type", "text/plain").MustStatus(t, 415)
	call(c, "GET", "/v1/webhook-endpoints", "/v1/webhook-endpoints?limit=1", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/webhook-endpoints", "/v1/webhook-endpoints?cursor=x", nil).MustStatus(t, 400)
	call(c, "GET", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, nil).MustStatus(t, 200)
	call(c, "GET", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/nope", nil).MustStatus(t, 404)
	upd := call(c, "PATCH", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, map[string]any{"enabled": false}).MustStatus(t, 200).JSON(t)
	if upd["state"] != "disabled" || upd["enabled"] != false {
		t.Fatalf("disabled: %v", upd)
	}
	call(c, "PATCH", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, map[string]any{"enabled": true, "event_types": []string{}}).MustStatus(t, 200)
	call(c, "PATCH", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, map[string]any{"url": "nope"}).MustStatus(t, 400)
	call(c, "PATCH", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+uuid.NewString(), map[string]any{"enabled": true}).MustStatus(t, 404)
	rot := call(c, "POST", "/v1/webhook-endpoints/{id}/rotate-secret", "/v1/webhook-endpoints/"+id+"/rotate-secret", nil, "Idempotency-Key", "rot-1").MustStatus(t, 200).JSON(t)
	if s2, _ := rot["secret"].(string); s2 == "" || s2 == secret {
		t.Fatalf("rotation: %v", rot)
	}
	call(c, "POST", "/v1/webhook-endpoints/{id}/rotate-secret", "/v1/webhook-endpoints/"+id+"/rotate-secret", nil, "Idempotency-Key", "rot-1").MustStatus(t, 200)

	msg := mustFanout(t, s.DB, c.Tenant, "transfer.posted")
	call(c, "GET", "/v1/webhook-endpoints/{id}/attempts", "/v1/webhook-endpoints/"+id+"/attempts?limit=5", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/webhook-endpoints/{id}/attempts", "/v1/webhook-endpoints/"+id+"/attempts?cursor=-1", nil).MustStatus(t, 400)
	path := "/v1/webhook-endpoints/{id}/messages/{message_id}/replay"
	call(c, "POST", path, "/v1/webhook-endpoints/"+id+"/messages/"+msg+"/replay", nil).MustStatus(t, 202)
	call(c, "POST", path, "/v1/webhook-endpoints/"+id+"/messages/nope/replay", nil).MustStatus(t, 404)
	rec := "/v1/webhook-endpoints/{id}/recover"
	call(c, "POST", rec, "/v1/webhook-endpoints/"+id+"/recover", map[string]any{"since": "2026-01-01T00:00:00Z"}).MustStatus(t, 202)
	call(c, "POST", rec, "/v1/webhook-endpoints/"+id+"/recover", map[string]any{}).MustStatus(t, 400)
	call(c, "POST", rec, "/v1/webhook-endpoints/"+id+"/recover", map[string]any{"since": "yesterday"}).MustStatus(t, 400)
	call(c, "DELETE", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, nil).MustStatus(t, 204)
	call(c, "DELETE", "/v1/webhook-endpoints/{id}", "/v1/webhook-endpoints/"+id, nil).MustStatus(t, 404)
}

// TestIsolation_WebhookEndpoints: on every webhook route, another tenant's
// endpoint is 404 and unchanged, and lists show only the caller's own.
func TestIsolation_WebhookEndpoints(t *testing.T) {
	t.Parallel()
	p := setupTenants(t)
	ep := p.a.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://example.com/a"}).MustStatus(t, 201).JSON(t)
	id := ep["id"].(string)
	msg := mustFanout(t, p.DB, p.a.Tenant, "transfer.posted")
	p.b.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://example.com/b"}).MustStatus(t, 201)

	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/webhook-endpoints/" + id, nil},
		{"PATCH", "/v1/webhook-endpoints/" + id, map[string]any{"enabled": false}},
		{"POST", "/v1/webhook-endpoints/" + id + "/rotate-secret", nil},
		{"GET", "/v1/webhook-endpoints/" + id + "/attempts", nil},
		{"POST", "/v1/webhook-endpoints/" + id + "/messages/" + msg + "/replay", nil},
		{"POST", "/v1/webhook-endpoints/" + id + "/recover", map[string]any{"since": "2026-01-01T00:00:00Z"}},
		{"DELETE", "/v1/webhook-endpoints/" + id, nil},
	} {
		resp := p.b.Do(t, r.method, r.path, r.body)
		if resp.Status != 404 || resp.ProblemType(t) != "not-found" {
			t.Errorf("%s %s by another tenant: %d %s, want 404", r.method, r.path, resp.Status, resp.Body)
		}
		mustNotMention(t, resp, r.path, p.a.Tenant, "https://example.com/a")
	}
	// Tenant b's endpoint holds none of a's messages.
	var n int
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE message_id = $1 AND tenant_id <> $2`,
		msg, p.a.Tenant).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d deliveries of tenant a's message to another tenant (err %v)", n, err)
	}
	list := p.b.Do(t, "GET", "/v1/webhook-endpoints", nil).MustStatus(t, 200)
	for _, e := range list.JSON(t)["data"].([]any) {
		if e.(map[string]any)["tenant_id"] != p.b.Tenant {
			t.Errorf("tenant b lists %v", e)
		}
	}
	got := p.a.Do(t, "GET", "/v1/webhook-endpoints/"+id, nil).MustStatus(t, 200).JSON(t)
	if got["enabled"] != true || got["updated_at"] != ep["updated_at"] {
		t.Fatalf("another tenant changed the endpoint: %v", got)
	}
}

// TestWebhooks_NotConfigured: without a key to seal secrets, every webhook
// route answers 501 webhooks-not-configured and writes nothing.
func TestWebhooks_NotConfigured(t *testing.T) {
	t.Parallel()
	db := dbtest.MustOpenDB(t)
	s := &TestServer{DB: db, Server: apitest.MustServeWith(t, db, func(s *holdfasthttp.Server) { s.WebhookService = nil },
		func(c *holdfasthttp.Config) { c.AdminToken = adminToken })}
	c := s.MustTenant(t)
	r := c.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://example.com"}).MustStatus(t, 501)
	if r.ProblemType(t) != "webhooks-not-configured" {
		t.Fatalf("%s", r.Body)
	}
	loadOpenAPI(t).checkResponse(t, "POST", "/v1/webhook-endpoints", r)
	c.Do(t, "GET", "/v1/webhook-endpoints", nil).MustStatus(t, 501)
}
