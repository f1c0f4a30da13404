package http_test

import (
	"net/http"
	"sync"
	"testing"
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
