package http_test

import (
	"net/url"
	"slices"
	"testing"
	"time"
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
