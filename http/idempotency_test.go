package http_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// concurrentPosts sends the same keyed POST from n goroutines at once and
// returns how many ran (201 without Idempotent-Replayed), were replayed, or
// were told the key is in use.
func concurrentPosts(t *testing.T, c *Client, path string, body any, key string, n int) (ran, replayed, inUse int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := c.Do(t, "POST", path, body, "Idempotency-Key", key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case r.Status == http.StatusCreated && r.Header.Get("Idempotent-Replayed") == "true":
				replayed++
			case r.Status == http.StatusCreated:
				ran++
			case r.Status == http.StatusConflict && r.ProblemType(t) == "idempotency-key-in-use":
				inUse++
			default:
				t.Errorf("status %d: %s", r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	return ran, replayed, inUse
}

func TestIdempotency_ConcurrentTransfersRunOnce(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	ran, replayed, inUse := concurrentPosts(t, c, "/v1/transfers", Transfer(house, alice, 42, "USD"), "once", 20)
	if ran != 1 || ran+replayed+inUse != 20 {
		t.Fatalf("%d ran, %d replayed, %d in use; want exactly 1 run of 20", ran, replayed, inUse)
	}
	if got := c.Balance(t, alice); got != 42 {
		t.Fatalf("balance %d, want 42", got)
	}
}

func TestIdempotency_ConcurrentAccountsRunOnce(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	ran, replayed, inUse := concurrentPosts(t, c, "/v1/accounts", map[string]any{"currency": "EUR"}, "acct-once", 20)
	if ran != 1 || ran+replayed+inUse != 20 {
		t.Fatalf("%d ran, %d replayed, %d in use; want exactly 1 run of 20", ran, replayed, inUse)
	}
	list := c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200).JSON(t)["data"].([]any)
	if len(list) != 1 {
		t.Fatalf("%d accounts created, want 1", len(list))
	}
}

func TestIdempotency_ReplayIsByteIdentical(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	for _, tc := range []struct {
		name, path string
		body       any
	}{
		{"transfer", "/v1/transfers", Transfer(house, alice, 7, "USD")},
		{"linked", "/v1/linked-transfers", map[string]any{"transfers": []any{Transfer(house, alice, 1, "USD"), Transfer(alice, house, 1, "USD")}}},
		{"account", "/v1/accounts", map[string]any{"currency": "USD", "metadata": map[string]string{"a": "b"}}},
		// An API key's replay leaves its secret out: TestAPIKeys_SecretIsNeverStoredForReplay.
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := c.Do(t, "POST", tc.path, tc.body, "Idempotency-Key", "replay-"+tc.name).MustStatus(t, 201)
			if first.Header.Get("Idempotent-Replayed") != "" {
				t.Fatal("the first request is marked as a replay")
			}
			again := c.Do(t, "POST", tc.path, tc.body, "Idempotency-Key", "replay-"+tc.name).MustStatus(t, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
				t.Fatalf("retry: replayed=%q\n%s\nwant the same bytes as\n%s", again.Header.Get("Idempotent-Replayed"), again.Body, first.Body)
			}
		})
	}
	if got := c.Balance(t, alice); got != 7 {
		t.Fatalf("balance %d, want 7: a replay moved money", got)
	}
}

func TestIdempotency_ReusedKeyAndStoredFailure(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	c.Do(t, "POST", "/v1/transfers", Transfer(house, alice, 5, "USD"), "Idempotency-Key", "k").MustStatus(t, 201)
	for _, path := range []string{"/v1/transfers", "/v1/accounts"} {
		r := c.Do(t, "POST", path, Transfer(house, alice, 6, "USD"), "Idempotency-Key", "k")
		if r.Status != 422 || r.ProblemType(t) != "idempotency-key-reused" {
			t.Fatalf("%s with a used key and another body: %d %s", path, r.Status, r.Body)
		}
	}
	// A final failure is stored: the retry replays it even after the account is funded.
	first := c.Do(t, "POST", "/v1/transfers", Transfer(alice, house, 100, "USD"), "Idempotency-Key", "broke").MustStatus(t, 422)
	c.MustFund(t, alice, "USD", 1000)
	again := c.Do(t, "POST", "/v1/transfers", Transfer(alice, house, 100, "USD"), "Idempotency-Key", "broke").MustStatus(t, 422)
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("stored failure not replayed: %s", again.Body)
	}
	if got := c.Balance(t, alice); got != 1005 {
		t.Fatalf("balance %d, want 1005", got)
	}
	// A validation error is not stored: the corrected request may use the key.
	c.Do(t, "POST", "/v1/transfers", Transfer(alice, house, 0, "USD"), "Idempotency-Key", "fixme").MustStatus(t, 400)
	c.Do(t, "POST", "/v1/transfers", Transfer(alice, house, 1, "USD"), "Idempotency-Key", "fixme").MustStatus(t, 201)
}

// TestIdempotency_SameJSONOtherwiseWrittenReplays: a retry whose body is
// the same JSON with other whitespace and member order is the same request
// (its parameters are compared, not its bytes) and replays; a retry with a
// different value is another request. For
// transfers (whose key is claimed in the batch) and for the other POSTs.
func TestIdempotency_SameJSONOtherwiseWrittenReplays(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	for _, tc := range []struct {
		name, path          string
		first, same, differ string
	}{
		{"transfer", "/v1/transfers",
			`{"debit_account_id":"` + house + `","credit_account_id":"` + alice + `","amount":7,"currency":"USD","description":"caf\u00e9"}`,
			"{\n  \"currency\" : \"USD\",\t\"amount\": 7,\n  \"description\": \"café\",\r\n  \"credit_account_id\": \"" + alice + "\", \"debit_account_id\": \"" + house + "\"\n}\n",
			`{"debit_account_id":"` + house + `","credit_account_id":"` + alice + `","amount":8,"currency":"USD","description":"café"}`},
		{"linked", "/v1/linked-transfers",
			`{"transfers":[{"debit_account_id":"` + house + `","credit_account_id":"` + alice + `","amount":1,"currency":"USD"}]}`,
			` { "transfers" : [ { "currency":"USD", "amount":1, "credit_account_id":"` + alice + `", "debit_account_id":"` + house + `" } ] } `,
			`{"transfers":[{"debit_account_id":"` + house + `","credit_account_id":"` + alice + `","amount":1,"currency":"EUR"}]}`},
		{"account", "/v1/accounts",
			`{"currency":"USD","allow_overdraft":false,"metadata":{"a":"1","b":"2"}}`,
			`{ "metadata": {"b": "2", "a": "1"}, "allow_overdraft": false, "currency": "USD" }`,
			`{"currency":"USD","allow_overdraft":false,"metadata":{"a":"1","b":"3"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "canonical-" + tc.name
			first := c.Do(t, "POST", tc.path, tc.first, "Idempotency-Key", key).MustStatus(t, 201)
			again := c.Do(t, "POST", tc.path, tc.same, "Idempotency-Key", key)
			if again.Status != 201 || again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
				t.Fatalf("the same JSON written otherwise: %d replayed=%q %s; want the first response replayed",
					again.Status, again.Header.Get("Idempotent-Replayed"), again.Body)
			}
			mustProblem(t, c.Do(t, "POST", tc.path, tc.differ, "Idempotency-Key", key), 422, "idempotency-key-reused")
		})
	}
	if got := c.Balance(t, alice); got != 8 {
		t.Fatalf("balance %d, want 8: a replay moved money", got)
	}
}

// TestIdempotency_ResponsesStoredBeforeTheUpgradeReplayTheSame: a key
// completed by a version that stored HTTP responses (before migration
// 0015) replays, after the upgrade, the very bytes that version answered,
// for every kind of write: a transfer, a linked set, a linked set's final
// failure (its request_id the first request's), an account, an API key and
// a tenant (shown without their secret), an events batch and a consumer
// pause. None of them runs again.
func TestIdempotency_ResponsesStoredBeforeTheUpgradeReplayTheSame(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := postgres.MigrateTo(ctx, db, 14); err != nil {
		t.Fatal(err)
	}
	tenant, key, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "upgraded"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const adminTenant = "00000000-0000-0000-0000-000000000000"
	at := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
	a, b := uuid.NewString(), uuid.NewString()
	mustJSON := func(v any) string {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(j) + "\n"
	}
	transfer := func(amount int64) *holdfast.Transfer {
		return &holdfast.Transfer{ID: uuid.NewString(), DebitAccountID: a, CreditAccountID: b, Amount: amount, Currency: "USD", Description: "café", CreatedAt: at}
	}
	// Request bodies in their canonical form (members sorted, no space),
	// which the fingerprint hashes.
	move := func(amount int) string {
		return `{"amount":` + string(rune('0'+amount)) + `,"credit_account_id":"` + b + `","currency":"USD","debit_account_id":"` + a + `"}`
	}
	pausedUntil := at.Add(time.Hour)
	cases := []struct {
		name, tenant, path, body string
		status                   int
		ctype, stored            string // what the earlier version answered, and stored
	}{
		{"transfer", tenant.ID, "/v1/transfers", move(1), 201, "application/json", mustJSON(transfer(1))},
		{"linked", tenant.ID, "/v1/linked-transfers", `{"transfers":[` + move(2) + `,` + move(3) + `]}`, 201, "application/json",
			mustJSON(map[string]any{"transfers": []*holdfast.Transfer{transfer(2), transfer(3)}})},
		{"linked failure", tenant.ID, "/v1/linked-transfers", `{"transfers":[` + move(4) + `,` + move(5) + `]}`, 422, "application/problem+json",
			`{"detail":"transfers[1] failed, so none was applied: account ` + a + ` has insufficient funds","index":1,"instance":"/v1/linked-transfers",` +
				`"request_id":"0123456789abcdef01234567","status":422,"title":"Insufficient funds","type":"https://holdfast.dev/problems/insufficient-funds"}` + "\n"},
		{"account", tenant.ID, "/v1/accounts", `{"currency":"USD","metadata":{"a":"b"}}`, 201, "application/json",
			mustJSON(&holdfast.Account{ID: uuid.NewString(), Currency: "USD", Metadata: map[string]string{"a": "b"}, CreatedAt: at})},
		{"api key", tenant.ID, "/v1/api-keys", "", 201, "application/json",
			`{"id":"` + key.ID + `","tenant_id":"` + tenant.ID + `","prefix":"` + key.Prefix + `","secret":null,"secret_redacted":true,"created_at":"2026-03-04T05:06:07.891011Z"}` + "\n"},
		{"tenant", adminTenant, "/v1/admin/tenants", `{"name":"upgraded"}`, 201, "application/json",
			`{"tenant":{"id":"` + tenant.ID + `","name":"upgraded","created_at":"2026-03-04T05:06:07.891011Z"},"api_key":{"id":"` + key.ID + `","tenant_id":"` + tenant.ID +
				`","prefix":"` + key.Prefix + `","secret":null,"secret_redacted":true,"created_at":"2026-03-04T05:06:07.891011Z"}}` + "\n"},
		{"events", tenant.ID, "/v1/events", `{"events":[{"type":"a.b"}]}`, 202, "application/json",
			mustJSON(map[string]any{"accepted": 2, "ids": []string{uuid.NewString(), uuid.NewString()}})},
		{"pause", adminTenant, "/v1/admin/consumers/audit/pause", `{"reason":"m"}`, 200, "application/json",
			mustJSON(&holdfast.ConsumerStatus{Name: postgres.AuditGroup, Pending: 3, LastApplied: 1 << 60, LagSeconds: 0.1 + 0.2, Paused: true,
				PausedUntil: &pausedUntil, PauseReason: "m", AckWait: "30s", MaxBatch: 100, MaxAckPending: 1000})},
	}
	for _, tc := range cases {
		fp := sha256.Sum256([]byte("POST " + tc.path + "?\n" + tc.body))
		if _, err := db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
			VALUES ($1, $2, $3, now(), $4, $5, $6)`, tc.tenant, "before-"+tc.name, fp[:], tc.status, tc.ctype, []byte(tc.stored)); err != nil {
			t.Fatal(err)
		}
	}
	if err := postgres.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}

	s := MustOpenServerOn(t, db)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{URL: s.URL(), Key: key.Secret}
			if tc.tenant == adminTenant {
				c = s.Admin()
			}
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := c.Do(t, "POST", tc.path, body, "Idempotency-Key", "before-"+tc.name)
			if r.Status != tc.status || r.Header.Get("Idempotent-Replayed") != "true" || r.Header.Get("Content-Type") != tc.ctype || string(r.Body) != tc.stored {
				t.Fatalf("replay: %d replayed=%q %s\n%s\nwant %d %s\n%s", r.Status, r.Header.Get("Idempotent-Replayed"), r.Header.Get("Content-Type"), r.Body,
					tc.status, tc.ctype, tc.stored)
			}
		})
	}
	var transfers int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM transfers").Scan(&transfers); err != nil || transfers != 0 {
		t.Fatalf("%d transfers after the replays (%v), want 0: a replay ran", transfers, err)
	}
}

// TestIdempotency_PauseReplaysItsFirstAnswer: a write whose effect lies
// outside the database (an admin pause) keeps its answer under its key:
// the retry gets the same bytes, a final failure (an unknown group)
// included, with the first request's id.
func TestIdempotency_PauseReplaysItsFirstAnswer(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	admin := s.Admin()
	for _, tc := range []struct {
		path   string
		status int
	}{{"/v1/admin/consumers/audit/pause", 200}, {"/v1/admin/consumers/nope/pause", 404}} {
		first := admin.Do(t, "POST", tc.path, map[string]any{"reason": "m"}, "Idempotency-Key", "pause"+tc.path).MustStatus(t, tc.status)
		admin.Do(t, "POST", "/v1/admin/consumers/audit/resume", nil).MustStatus(t, 200)
		again := admin.Do(t, "POST", tc.path, map[string]any{"reason": "m"}, "Idempotency-Key", "pause"+tc.path).MustStatus(t, tc.status)
		if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) ||
			again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
			t.Fatalf("%s retry: replayed=%q %s\n%s\nwant the first answer\n%s", tc.path, again.Header.Get("Idempotent-Replayed"),
				again.Header.Get("Content-Type"), again.Body, first.Body)
		}
	}
	// The replayed pause did not pause again: the group stays resumed.
	m := admin.Do(t, "GET", "/v1/admin/consumers", nil).MustStatus(t, 200).JSON(t)
	for _, g := range m["data"].([]any) {
		if g := g.(map[string]any); g["name"] == "audit" && g["paused"] == true {
			t.Fatal("the replay paused the group again")
		}
	}
}
