package main_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// verifySignature is a receiver's check written from the Standard Webhooks
// spec: HMAC-SHA256 over "id.timestamp.body" with the base64 key after
// "whsec_", any one of the space-separated "v1,<base64>" matching.
func verifySignature(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, b64, ok := strings.Cut(sig, ","); ok && v == "v1" {
			if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// TestServe_Kill9MidWebhook kills the replica delivering webhooks with
// SIGKILL while its attempts wait on the endpoint, restarts it on the same
// database and data directory, and checks that every transfer's
// transfer.posted event reached the endpoint with a 2xx, signed; the only
// duplicates are the attempts the dead replica had in flight.
func TestServe_Kill9MidWebhook(t *testing.T) {
	t.Parallel()
	bin := mustBinary(t)
	dbURL, dataDir := pgtest.NewDatabase(t), t.TempDir()
	flags := []string{"--webhook-secret-key", strings.Repeat("ab", 32), "--webhook-allow-private", "--webhook-timeout", "2s"}

	var mu sync.Mutex
	hold := make(chan struct{}) // closed once the first replica is dead
	held, bad := 0, 0
	delivered := map[string]int{} // transfer id → 2xx answers
	var secret string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		json.Unmarshal(body, &env)
		mu.Lock()
		if !verifySignature(secret, r.Header, body) || env.Type != "transfer.posted" {
			bad++
		}
		select {
		case <-hold:
		default:
			held++
			mu.Unlock()
			select {
			case <-hold:
			case <-r.Context().Done():
				return // its sender died
			}
			mu.Lock()
		}
		delivered[env.Data.ID]++
		mu.Unlock()
	}))
	defer rcv.Close()

	a := startServe(t, bin, dbURL, dataDir, flags...)
	c := (&apitest.Client{URL: a.base, Key: apptest.AdminToken}).MustTenant(t, "kill9-webhook")
	ep := c.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": rcv.URL, "event_types": []string{"transfer.posted"}}).MustStatus(t, 201).JSON(t)
	mu.Lock()
	secret = ep["secret"].(string)
	mu.Unlock()
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", true)
	var transfers []string
	transfer := func() {
		transfers = append(transfers, c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 1, "USD")).MustStatus(t, 201).JSON(t)["id"].(string))
	}
	for range 20 {
		transfer()
	}
	waitUntil(t, "the endpoint holds an attempt of the first replica", func() bool { mu.Lock(); defer mu.Unlock(); return held > 0 })
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	close(hold)

	b := startServe(t, bin, dbURL, dataDir, flags...)
	c.URL = b.base
	for range 20 {
		transfer()
	}
	waitUntil(t, "every transfer's event is delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range transfers {
			if delivered[id] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range delivered {
		dups += n - 1
	}
	t.Logf("%d transfers, %d delivered, %d held when killed, %d duplicates", len(transfers), len(delivered), held, dups)
	if bad > 0 {
		t.Fatalf("%d requests did not verify or were not transfer.posted", bad)
	}
	if len(delivered) != len(transfers) {
		t.Fatalf("%d transfers delivered, want %d", len(delivered), len(transfers))
	}
	// Only an attempt the killed replica had in flight may arrive twice.
	if dups > held {
		t.Fatalf("%d duplicates, more than the %d attempts in flight at the kill", dups, held)
	}
	failed := 0
	r := c.Do(t, "GET", "/v1/webhook-endpoints/"+ep["id"].(string)+"/attempts?limit=500", nil).MustStatus(t, 200).JSON(t)
	for _, at := range r["data"].([]any) {
		if at.(map[string]any)["result"] != "succeeded" {
			failed++
		}
	}
	if failed != 0 {
		t.Fatalf("%d recorded attempts did not succeed", failed)
	}
}
