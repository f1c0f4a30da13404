package http_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// tenantPair is two tenants on one server, each with two USD accounts; the
// From accounts allow overdraft, so only tenancy can refuse a transfer.
type tenantPair struct {
	*TestServer
	a, b                   *Client
	aFrom, aTo, bFrom, bTo string
}

func setupTenants(t *testing.T) *tenantPair {
	t.Helper()
	s := MustOpenServer(t)
	a, b := s.MustTenant(t), s.MustTenant(t)
	return &tenantPair{TestServer: s, a: a, b: b,
		aFrom: a.MustAccount(t, "USD", true), aTo: a.MustAccount(t, "USD", false),
		bFrom: b.MustAccount(t, "USD", true), bTo: b.MustAccount(t, "USD", false)}
}

// linked is a linked-transfers request body.
func linked(transfers ...any) map[string]any {
	return map[string]any{"transfers": transfers}
}

// mustNotMention fails tb if the response names any of others' identifiers
// that the request did not send itself.
func mustNotMention(tb testing.TB, r *Response, sent string, others ...string) {
	tb.Helper()
	body, sent := strings.ToLower(string(r.Body)), strings.ToLower(sent)
	for _, id := range others {
		if id = strings.ToLower(id); strings.Contains(body, id) && !strings.Contains(sent, id) {
			tb.Errorf("the response names %s, which the request did not: %s", id, r.Body)
		}
	}
}

// mustListAccounts pages through the tenant's accounts limit at a time and
// returns their ids.
func mustListAccounts(tb testing.TB, c *Client, limit int) []string {
	tb.Helper()
	var ids []string
	for cursor, pages := "", 0; ; pages++ {
		if pages > 1000 {
			tb.Fatal("the account list does not end")
		}
		m := c.Do(tb, "GET", fmt.Sprintf("/v1/accounts?limit=%d&cursor=%s", limit, url.QueryEscape(cursor)), nil).MustStatus(tb, 200).JSON(tb)
		data := m["data"].([]any)
		if len(data) > limit {
			tb.Fatalf("a page of %d accounts with limit=%d", len(data), limit)
		}
		for _, a := range data {
			ids = append(ids, a.(map[string]any)["id"].(string))
		}
		if cursor, _ = m["next_cursor"].(string); cursor == "" {
			return ids
		}
	}
}

// mustKeyIDs returns the ids of the tenant's API keys, checking each is the tenant's.
func mustKeyIDs(tb testing.TB, c *Client) []string {
	tb.Helper()
	var ids []string
	for _, k := range c.Do(tb, "GET", "/v1/api-keys", nil).MustStatus(tb, 200).JSON(tb)["data"].([]any) {
		key := k.(map[string]any)
		if key["tenant_id"] != c.Tenant {
			tb.Errorf("tenant %s is shown key %v of tenant %v", c.Tenant, key["id"], key["tenant_id"])
		}
		ids = append(ids, key["id"].(string))
	}
	return ids
}

// TestIsolation_ByID: A naming any of B's things by id gets a 404 that says
// nothing of B, and changes nothing of B's.
func TestIsolation_ByID(t *testing.T) {
	t.Parallel()
	p := setupTenants(t)
	bTransfer := Transfer(p.bFrom, p.bTo, 7, "USD")
	bTransferID := p.b.Do(t, "POST", "/v1/transfers", bTransfer).MustStatus(t, 201).JSON(t)["id"].(string)
	bHold := Transfer(p.bFrom, p.bTo, 1, "USD")
	bHold["pending"] = true
	bHoldID := p.b.Do(t, "POST", "/v1/transfers", bHold).MustStatus(t, 201).JSON(t)["id"].(string)
	bKey := p.b.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201).JSON(t)
	bKeyID, bSecret := bKey["id"].(string), bKey["secret"].(string)
	bThings := []string{p.b.Tenant, p.bFrom, p.bTo, bTransferID, bHoldID, bKeyID, bKey["prefix"].(string)}
	bBefore := mustState(t, p.b, p.bFrom, p.bTo)
	aBefore := mustState(t, p.a, p.aFrom, p.aTo)

	tests := []struct {
		name, method, path string
		body               any
	}{
		{"read B's account", "GET", "/v1/accounts/" + p.bFrom, nil},
		{"read B's account in upper case", "GET", "/v1/accounts/" + strings.ToUpper(p.bFrom), nil},
		{"list the transfers of B's account", "GET", "/v1/accounts/" + p.bTo + "/transfers?limit=2", nil},
		{"read B's transfer", "GET", "/v1/transfers/" + bTransferID, nil},
		{"patch B's transfer", "PATCH", "/v1/transfers/" + bTransferID, map[string]any{"metadata": map[string]any{"x": "y"}}},
		{"patch B's account", "PATCH", "/v1/accounts/" + p.bFrom, map[string]any{"metadata": map[string]any{"x": "y"}}},
		{"post B's hold", "POST", "/v1/transfers/" + bHoldID + "/post", nil},
		{"void B's hold", "POST", "/v1/transfers/" + bHoldID + "/void", nil},
		{"read B's balance at a moment", "GET", "/v1/accounts/" + p.bFrom + "/balance", nil},
		{"read B's balance history", "GET", "/v1/accounts/" + p.bFrom + "/balances?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", nil},
		{"revoke B's key", "DELETE", "/v1/api-keys/" + bKeyID, nil},
		{"debit B's account", "POST", "/v1/transfers", Transfer(p.bFrom, p.aTo, 1, "USD")},
		{"credit B's account", "POST", "/v1/transfers", Transfer(p.aFrom, p.bTo, 1, "USD")},
		{"move money between B's accounts", "POST", "/v1/transfers", Transfer(p.bFrom, p.bTo, 1, "USD")},
		{"repeat B's transfer with its id", "POST", "/v1/transfers", with(bTransfer, "id", bTransferID)},
		{"link B's account after one of A's", "POST", "/v1/linked-transfers",
			linked(Transfer(p.aFrom, p.aTo, 1, "USD"), Transfer(p.aFrom, p.bTo, 1, "USD"))},
		{"link B's account first", "POST", "/v1/linked-transfers",
			linked(Transfer(p.bFrom, p.aTo, 1, "USD"), Transfer(p.aFrom, p.aTo, 1, "USD"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.a.Do(t, tt.method, tt.path, tt.body)
			mustProblem(t, r, 404, notFound)
			sent, err := json.Marshal(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			mustNotMention(t, r, tt.path+string(sent), bThings...)
		})
	}
	mustStateUnchanged(t, p.b, bBefore)
	mustStateUnchanged(t, p.a, aBefore)
	(&Client{URL: p.URL(), Key: bSecret}).Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200) // B's key still works
}

// TestIsolation_ListAccounts: each tenant's account list, paged, holds its
// own accounts and only those, though their ids interleave.
func TestIsolation_ListAccounts(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	a, b := s.MustTenant(t), s.MustTenant(t)
	var aIDs, bIDs []string
	for i := range 5 {
		aIDs = append(aIDs, a.MustAccount(t, "USD", false))
		if i < 4 {
			bIDs = append(bIDs, b.MustAccount(t, "EUR", false))
		}
	}
	for _, tenant := range []struct {
		c    *Client
		want []string
	}{{a, aIDs}, {b, bIDs}} {
		got := mustListAccounts(t, tenant.c, 2)
		slices.Sort(got)
		slices.Sort(tenant.want)
		if !slices.Equal(got, tenant.want) {
			t.Errorf("tenant %s lists %v, want %v", tenant.c.Tenant, got, tenant.want)
		}
	}
}

// TestIsolation_ListAPIKeys: a tenant's key list holds its own keys only.
func TestIsolation_ListAPIKeys(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	a, b := s.MustTenant(t), s.MustTenant(t)
	for _, c := range []*Client{a, a, b, b, b} {
		c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201)
	}
	aKeys, bKeys := mustKeyIDs(t, a), mustKeyIDs(t, b)
	if len(aKeys) != 3 || len(bKeys) != 4 {
		t.Fatalf("A lists %d keys, B %d; want 3 and 4", len(aKeys), len(bKeys))
	}
	for _, id := range aKeys {
		if slices.Contains(bKeys, id) {
			t.Errorf("key %s is listed to both tenants", id)
		}
	}
}

// mustRunFresh sends a POST with an Idempotency-Key and fails tb unless it
// ran (201) rather than replayed a stored response.
func mustRunFresh(tb testing.TB, c *Client, path string, body any, key string) map[string]any {
	tb.Helper()
	r := c.Do(tb, "POST", path, body, "Idempotency-Key", key).MustStatus(tb, 201)
	if r.Header.Get("Idempotent-Replayed") != "" {
		tb.Fatalf("tenant %s got a replay of a request it never made: %s", c.Tenant, r.Body)
	}
	return r.JSON(tb)
}

// TestIsolation_IdempotencyKey: an Idempotency-Key B used is A's to use
// afresh, even for the very same request, and each replays only its own.
func TestIsolation_IdempotencyKey(t *testing.T) {
	t.Parallel()
	p := setupTenants(t)
	account := map[string]any{"currency": "USD"} // the same body: the same fingerprint
	bAccount := mustRunFresh(t, p.b, "/v1/accounts", account, "shared")["id"]
	aAccount := mustRunFresh(t, p.a, "/v1/accounts", account, "shared")["id"]
	mustProblem(t, p.a.Do(t, "GET", fmt.Sprint("/v1/accounts/", bAccount), nil), 404, notFound)

	r := p.a.Do(t, "POST", "/v1/accounts", account, "Idempotency-Key", "shared").MustStatus(t, 201)
	if r.Header.Get("Idempotent-Replayed") != "true" || r.JSON(t)["id"] != aAccount {
		t.Fatalf("A's retry is not a replay of A's own account %v: %v %s", aAccount, r.Header, r.Body)
	}

	mustRunFresh(t, p.b, "/v1/transfers", Transfer(p.bFrom, p.bTo, 5, "USD"), "shared-transfer")
	mustRunFresh(t, p.a, "/v1/transfers", Transfer(p.aFrom, p.aTo, 3, "USD"), "shared-transfer")
	if a, b := p.a.Balance(t, p.aTo), p.b.Balance(t, p.bTo); a != 3 || b != 5 {
		t.Errorf("balances A %d, B %d; want 3 and 5, each moved by its own transfer", a, b)
	}
}

// TestIsolation_ClientTransferID: transfer ids chosen by clients are scoped
// per tenant, so A may use an id B used, and neither sees the other's.
func TestIsolation_ClientTransferID(t *testing.T) {
	t.Parallel()
	p := setupTenants(t)
	id := uuid.NewString()
	p.b.Do(t, "POST", "/v1/transfers", with(Transfer(p.bFrom, p.bTo, 7, "USD"), "id", id)).MustStatus(t, 201)
	bBefore := mustState(t, p.b, p.bFrom, p.bTo)

	r := p.a.Do(t, "POST", "/v1/transfers", with(Transfer(p.aFrom, p.aTo, 3, "USD"), "id", id)).MustStatus(t, 201).JSON(t)
	if r["id"] != id || r["amount"] != float64(3) {
		t.Fatalf("A's transfer with B's id came back as %v", r)
	}
	for _, tt := range []struct {
		c      *Client
		debit  string
		amount float64
	}{{p.a, p.aFrom, 3}, {p.b, p.bFrom, 7}} {
		got := tt.c.Do(t, "GET", "/v1/transfers/"+id, nil).MustStatus(t, 200).JSON(t)
		if got["debit_account_id"] != tt.debit || got["amount"] != tt.amount {
			t.Errorf("tenant %s reads transfer %s as %v", tt.c.Tenant, id, got)
		}
	}
	if got := mustState(t, p.a, p.aTo)[p.aTo]; got != (accountState{Balance: 3, Transfers: 1}) {
		t.Errorf("A's credit account is %+v, want a balance of 3 from one transfer", got)
	}
	mustStateUnchanged(t, p.b, bBefore)
}
