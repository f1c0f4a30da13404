package http_test

import (
	"context"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/postgres"
)

// TestAPIKeys_Pages: the key list comes newest first, one page at a time,
// each key once, with next_cursor until the last page; a key created
// between two pages does not shift the pages that follow.
func TestAPIKeys_Pages(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t) // its first key
	for range 4 {
		c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201)
	}
	var want []string
	var last time.Time
	for _, k := range c.Do(t, "GET", "/v1/api-keys", nil).MustStatus(t, 200).JSON(t)["data"].([]any) {
		key := k.(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, key["created_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if !last.IsZero() && at.After(last) {
			t.Errorf("key %v created at %v is listed after one created at %v: want newest first", key["id"], at, last)
		}
		last = at
		want = append(want, key["id"].(string))
	}
	if len(want) != 5 {
		t.Fatalf("listed %d keys, want 5", len(want))
	}

	var got []string
	cursor := ""
	for pages := 1; ; pages++ {
		if pages > 3 {
			t.Fatalf("more than 3 pages of 2 for 5 keys: %v", got)
		}
		path := "/v1/api-keys?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		m := c.Do(t, "GET", path, nil).MustStatus(t, 200).JSON(t)
		data := m["data"].([]any)
		if len(data) > 2 {
			t.Fatalf("page %d holds %d keys, limit 2", pages, len(data))
		}
		for _, k := range data {
			got = append(got, k.(map[string]any)["id"].(string))
		}
		if pages == 1 {
			c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201)
		}
		if cursor, _ = m["next_cursor"].(string); cursor == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages listed %v, want %v", got, want)
	}
}

// mustNotStore fails tb if any row of any table of the database holds
// secret, as text or as the hex of its bytes (bytea columns).
func mustNotStore(tb testing.TB, db *postgres.DB, secret string) {
	tb.Helper()
	ctx := context.Background()
	rows, _ := db.Pool.Query(ctx, "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables")
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	if len(tables) == 0 {
		tb.Fatal("no tables to search")
	}
	for _, table := range tables {
		var n int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM "+table+` x WHERE strpos(x::text, $1) > 0 OR strpos(x::text, $2) > 0`,
			secret, hex.EncodeToString([]byte(secret))).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			tb.Errorf("%d rows of %s hold the secret", n, table)
		}
	}
}

// TestAPIKeys_SecretIsNeverStoredForReplay: a key created with an
// Idempotency-Key (POST /v1/api-keys, and the first key of POST
// /v1/admin/tenants) shows its secret in the first response only. No table
// holds the secret; the replay is the same response marked
// Idempotent-Replayed, with the secret null and secret_redacted true, and
// the secret still works.
func TestAPIKeys_SecretIsNeverStoredForReplay(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	for _, tc := range []struct {
		name, path string
		client     *Client
		body       any
		key        func(m map[string]any) map[string]any
	}{
		{"api key", "/v1/api-keys", c, nil, func(m map[string]any) map[string]any { return m }},
		{"tenant", "/v1/admin/tenants", s.Admin(), map[string]any{"name": "replayed"}, func(m map[string]any) map[string]any {
			return m["api_key"].(map[string]any)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := tc.client.Do(t, "POST", tc.path, tc.body, "Idempotency-Key", "secret-"+tc.name).MustStatus(t, 201)
			created := tc.key(first.JSON(t))
			secret, _ := created["secret"].(string)
			if secret == "" || created["secret_redacted"] != nil {
				t.Fatalf("the first response does not show the secret: %s", first.Body)
			}
			mustNotStore(t, s.DB, secret)

			again := tc.client.Do(t, "POST", tc.path, tc.body, "Idempotency-Key", "secret-"+tc.name).MustStatus(t, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("the retry is not marked as a replay: %v", again.Header)
			}
			if strings.Contains(string(again.Body), secret) {
				t.Fatalf("the replay shows the secret: %s", again.Body)
			}
			replayed := tc.key(again.JSON(t))
			if v, ok := replayed["secret"]; !ok || v != nil || replayed["secret_redacted"] != true {
				t.Fatalf("replay: secret %v, secret_redacted %v; want null and true: %s", replayed["secret"], replayed["secret_redacted"], again.Body)
			}
			for _, field := range []string{"id", "tenant_id", "prefix", "created_at"} {
				if replayed[field] != created[field] {
					t.Errorf("replay: %s %v, want %v", field, replayed[field], created[field])
				}
			}
			(&Client{URL: s.URL(), Key: secret}).Do(t, "GET", "/v1/api-keys", nil).MustStatus(t, 200)
		})
	}
}
