package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/webhooks"
)

// TestMain_WebhooksEndToEnd: with a key, a transfer's event reaches the
// tenant's endpoint through the outbox, the stream and the webhooks group;
// the group is listed with the others, and the metrics are served.
func TestMain_WebhooksEndToEnd(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("webhook-id")+" "+string(body))
		mu.Unlock()
	}))
	defer rcv.Close()
	m := apptest.MustStart(t, pgtest.NewDatabase(t), func(c *app.Config) {
		c.Webhooks.SecretKey, c.Webhooks.AllowPrivate = webhooks.NewKey(), true
	})
	admin := apptest.Admin(m)
	c := admin.MustTenant(t, "webhooks-e2e")
	c.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": rcv.URL, "event_types": []string{"transfer.posted"}}).MustStatus(t, 201)
	from, to := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	tr := c.Do(t, "POST", "/v1/transfers", apitest.Transfer(from, to, 7, "USD")).MustStatus(t, 201).JSON(t)["id"].(string)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the transfer's event never reached the endpoint")
		}
	}
	mu.Lock()
	if len(got) != 1 || !strings.Contains(got[0], `"type":"transfer.posted"`) || !strings.Contains(got[0], tr) {
		t.Fatalf("the endpoint got %q, want the transfer's transfer.posted", got)
	}
	mu.Unlock()
	if body := string(admin.Do(t, "GET", "/v1/admin/consumers", nil).MustStatus(t, 200).Body); !strings.Contains(body, `"webhooks"`) {
		t.Errorf("the webhooks group is not listed: %s", body)
	}
	// The attempt is recorded (and counted) just after the endpoint answers.
	var metrics string
	for deadline := time.Now().Add(time.Minute); !strings.Contains(metrics, `holdfast_webhook_delivery_lag_seconds_count 1`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
		metrics = string((&apitest.Client{URL: m.HTTP.URL()}).Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body)
	}
	for _, want := range []string{`holdfast_webhook_endpoints{state="healthy"} 1`, `holdfast_webhook_attempts_total{result="succeeded"} 1`,
		`holdfast_consumer_lag_messages{group="webhooks"}`, `holdfast_webhook_delivery_lag_seconds_count 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestMain_WebhooksOffWithoutAKey: without a key the service runs, and
// the webhook routes say they are not configured.
func TestMain_WebhooksOffWithoutAKey(t *testing.T) {
	t.Parallel()
	m := apptest.MustStart(t, pgtest.NewDatabase(t))
	c := apptest.Admin(m).MustTenant(t, "webhooks-off")
	if r := c.Do(t, "GET", "/v1/webhook-endpoints", nil).MustStatus(t, 501); r.ProblemType(t) != "webhooks-not-configured" {
		t.Fatalf("%s", r.Body)
	}
}
