package http_test

import (
	"net/http"
	"net/url"
	"testing"
)

// GET /v1/transfers filters the tenant's transfers, newest first, a page at
// a time with has_more; PATCH changes metadata by key.
func TestSearch_FiltersPagesAndPatches(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	house, alice, bob := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false), c.MustAccount(t, "USD", false)
	var ids []string
	for i := range 6 {
		body := Transfer(house, alice, int64(10*(i+1)), "USD")
		if i%2 == 0 {
			body["metadata"] = map[string]string{"order": "A", "n": string(rune('0' + i))}
		}
		ids = append(ids, c.Do(t, "POST", "/v1/transfers", body).MustStatus(t, http.StatusCreated).JSON(t)["id"].(string))
	}
	hold := Transfer(house, bob, 5, "USD")
	hold["pending"] = true
	holdID := c.Do(t, "POST", "/v1/transfers", hold).MustStatus(t, http.StatusCreated).JSON(t)["id"].(string)

	search := func(query string) ([]string, bool, string) {
		t.Helper()
		m := c.Do(t, "GET", "/v1/transfers?"+query, nil).MustStatus(t, http.StatusOK).JSON(t)
		var got []string
		for _, d := range m["data"].([]any) {
			got = append(got, d.(map[string]any)["id"].(string))
		}
		next, _ := m["next_cursor"].(string)
		return got, m["has_more"].(bool), next
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: %v, want %v", what, got, want)
			}
		}
	}
	all, more, _ := search("")
	same("all", all, holdID, ids[5], ids[4], ids[3], ids[2], ids[1], ids[0])
	if more {
		t.Fatal("has_more on the only page")
	}
	// Pages of two, following the cursor.
	var paged []string
	for cursor, first := "", true; first || cursor != ""; first = false {
		q := "limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		got, more, next := search(q)
		if more != (next != "") {
			t.Fatalf("has_more %v with next_cursor %q", more, next)
		}
		paged, cursor = append(paged, got...), next
	}
	same("paged", paged, all...)

	got, _, _ := search("status=pending")
	same("pending", got, holdID)
	got, _, _ = search("account_id=" + bob)
	same("bob's", got, holdID)
	got, _, _ = search("account_id=" + alice + "&amount[gte]=20&amount[lte]=40")
	same("alice's from 20 to 40", got, ids[3], ids[2], ids[1])
	got, _, _ = search("metadata[order]=A")
	same("order A", got, ids[4], ids[2], ids[0])
	got, _, _ = search("metadata[order]=A&metadata[n]=2")
	same("order A, n 2", got, ids[2])
	got, _, _ = search("account_id=" + alice + "&limit=2")
	same("alice's first page", got, ids[5], ids[4])
	_, _, next := search("account_id=" + alice + "&limit=2")
	got, _, _ = search("account_id=" + alice + "&limit=2&cursor=" + url.QueryEscape(next))
	same("alice's second page", got, ids[3], ids[2])
	got, _, _ = search("created[lt]=2000-01-01T00:00:00Z")
	same("before 2000", got)

	for _, bad := range []string{"status=lost", "amount[gte]=x", "created[gte]=yesterday", "cursor=zzz", "account_id=nope", "metadata[]=x", "colour=red", "limit=0"} {
		if r := c.Do(t, "GET", "/v1/transfers?"+bad, nil); r.Status != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", bad, r.Status)
		}
	}
	// Another tenant finds none of it.
	if got := s.MustTenant(t).Do(t, "GET", "/v1/transfers?metadata[order]=A", nil).MustStatus(t, http.StatusOK).JSON(t)["data"].([]any); len(got) != 0 {
		t.Fatalf("another tenant found %v", got)
	}

	// PATCH by key: set one, remove one, keep the rest.
	p := c.Do(t, "PATCH", "/v1/transfers/"+ids[0], map[string]any{"metadata": map[string]any{"order": "B", "n": nil, "note": "x"}}).MustStatus(t, http.StatusOK).JSON(t)
	if m := p["metadata"].(map[string]any); len(m) != 2 || m["order"] != "B" || m["note"] != "x" {
		t.Fatalf("patched metadata = %v", p["metadata"])
	}
	got, _, _ = search("metadata[order]=B")
	same("order B after the patch", got, ids[0])
	a := c.Do(t, "PATCH", "/v1/accounts/"+alice, map[string]any{"metadata": map[string]any{"tier": "gold"}}).MustStatus(t, http.StatusOK).JSON(t)
	if a["metadata"].(map[string]any)["tier"] != "gold" || a["balance"] != float64(210) {
		t.Fatalf("patched account = %v", a)
	}
	if r := s.MustTenant(t).Do(t, "PATCH", "/v1/transfers/"+ids[0], map[string]any{"metadata": map[string]any{"x": "y"}}); r.Status != http.StatusNotFound {
		t.Fatalf("another tenant's patch: %d", r.Status)
	}
	if r := c.Do(t, "PATCH", "/v1/transfers/"+ids[0], map[string]any{"metadata": map[string]any{"": "y"}}); r.Status != http.StatusBadRequest {
		t.Fatalf("an empty key: %d", r.Status)
	}
}
