package http_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
)

// A hold over HTTP: created with "pending": true, posted or voided under an
// Idempotency-Key (a retry is replayed, not applied again) or a client id,
// refused the second time with a clear 409, and the account shows what is
// held and what is available.
func TestHolds_PostAndVoidOverHTTP(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	c.MustFund(t, alice, "USD", 100)
	shop := c.MustAccount(t, "USD", false)

	body := Transfer(alice, shop, 60, "USD")
	body["pending"] = true
	body["timeout"] = 3600
	body["metadata"] = map[string]string{"order": "A-17"}
	hold := c.Do(t, "POST", "/v1/transfers", body).MustStatus(t, http.StatusCreated).JSON(t)
	if hold["status"] != "pending" || hold["pending"] != true || hold["expires_at"] == nil || hold["currency_exponent"] != float64(2) {
		t.Fatalf("hold = %v", hold)
	}
	id := hold["id"].(string)
	acct := c.Do(t, "GET", "/v1/accounts/"+alice, nil).MustStatus(t, http.StatusOK).JSON(t)
	if acct["posted"] != float64(100) || acct["pending_debits"] != float64(60) || acct["available"] != float64(40) {
		t.Fatalf("account while held = %v", acct)
	}

	// Post 50 under a key; the retry is replayed.
	first := c.Do(t, "POST", "/v1/transfers/"+id+"/post", map[string]any{"amount": 50}, "Idempotency-Key", "capture-1").MustStatus(t, http.StatusCreated)
	again := c.Do(t, "POST", "/v1/transfers/"+id+"/post", map[string]any{"amount": 50}, "Idempotency-Key", "capture-1").MustStatus(t, http.StatusCreated)
	if again.Header.Get("Idempotent-Replayed") != "true" || again.JSON(t)["id"] != first.JSON(t)["id"] {
		t.Fatalf("the retry of the post was not replayed: %v", again.JSON(t))
	}
	if p := first.JSON(t); p["pending_id"] != id || p["amount"] != float64(50) || p["status"] != "posted" {
		t.Fatalf("post = %v", p)
	}
	// Another key: the hold is posted already.
	r := c.Do(t, "POST", "/v1/transfers/"+id+"/post", nil, "Idempotency-Key", "capture-2")
	if r.Status != http.StatusConflict || r.ProblemType(t) != holdfast.EALREADYPOSTED {
		t.Fatalf("second post: %d %s", r.Status, r.Body)
	}
	r = c.Do(t, "POST", "/v1/transfers/"+id+"/void", nil)
	if r.Status != http.StatusConflict || r.ProblemType(t) != holdfast.EALREADYPOSTED {
		t.Fatalf("void after post: %d %s", r.Status, r.Body)
	}
	if got := c.Balance(t, alice); got != 50 {
		t.Fatalf("alice = %d, want 50 (posted once, the rest released)", got)
	}

	// A void under a client id; the same id again returns it.
	h2 := Transfer(house, shop, 7, "USD")
	h2["pending"] = true
	id2 := c.Do(t, "POST", "/v1/transfers", h2).MustStatus(t, http.StatusCreated).JSON(t)["id"].(string)
	vid := uuid.NewString()
	v := c.Do(t, "POST", "/v1/transfers/"+id2+"/void", map[string]any{"id": vid}).MustStatus(t, http.StatusCreated).JSON(t)
	if v["id"] != vid || v["status"] != "voided" {
		t.Fatalf("void = %v", v)
	}
	c.Do(t, "POST", "/v1/transfers/"+id2+"/void", map[string]any{"id": vid}).MustStatus(t, http.StatusCreated)
	r = c.Do(t, "POST", "/v1/transfers/"+id2+"/void", nil)
	if r.Status != http.StatusConflict || r.ProblemType(t) != holdfast.EALREADYVOIDED {
		t.Fatalf("second void: %d %s", r.Status, r.Body)
	}
	r = c.Do(t, "POST", "/v1/transfers/"+id2+"/post", nil)
	if r.Status != http.StatusConflict || r.ProblemType(t) != holdfast.EALREADYVOIDED {
		t.Fatalf("post after void: %d %s", r.Status, r.Body)
	}

	// Bad input is a 4xx that writes nothing.
	h3 := Transfer(alice, shop, 10, "USD")
	h3["pending"] = true
	id3 := c.Do(t, "POST", "/v1/transfers", h3).MustStatus(t, http.StatusCreated).JSON(t)["id"].(string)
	for _, tc := range []struct {
		path   string
		body   any
		status int
	}{
		{"/v1/transfers/" + id3 + "/post", map[string]any{"amount": 11}, http.StatusUnprocessableEntity},
		{"/v1/transfers/" + id3 + "/post", map[string]any{"amount": -1}, http.StatusBadRequest},
		{"/v1/transfers/" + id3 + "/void", map[string]any{"amount": 1}, http.StatusBadRequest},
		{"/v1/transfers/" + id3 + "/post", map[string]any{"pending_id": id}, http.StatusBadRequest},
		{"/v1/transfers/" + first.JSON(t)["id"].(string) + "/post", nil, http.StatusConflict},
		{"/v1/transfers/" + uuid.NewString() + "/post", nil, http.StatusNotFound},
		{"/v1/transfers/not-a-uuid/void", nil, http.StatusNotFound},
	} {
		if r := c.Do(t, "POST", tc.path, tc.body); r.Status != tc.status {
			t.Errorf("POST %s %v: %d %s, want %d", tc.path, tc.body, r.Status, r.Body, tc.status)
		}
	}
	pending := map[string]any{"debit_account_id": alice, "credit_account_id": shop, "amount": 1, "currency": "USD", "timeout": 5}
	if r := c.Do(t, "POST", "/v1/transfers", pending); r.Status != http.StatusBadRequest {
		t.Errorf("a timeout without pending: %d, want 400", r.Status)
	}
	acct = c.Do(t, "GET", "/v1/accounts/"+alice, nil).MustStatus(t, http.StatusOK).JSON(t)
	if acct["pending_debits"] != float64(10) || acct["available"] != float64(40) {
		t.Fatalf("account after the refusals = %v", acct)
	}
	// Another tenant sees none of it.
	other := s.MustTenant(t)
	if r := other.Do(t, "POST", "/v1/transfers/"+id3+"/post", nil); r.Status != http.StatusNotFound {
		t.Fatalf("another tenant's post: %d, want 404", r.Status)
	}
}
