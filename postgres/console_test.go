package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// ListTenants pages through every tenant once, oldest first, with its
// unrevoked keys counted, and refuses a malformed cursor.
func TestListTenants_PagesWithActiveKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := MustOpenDB(t)
	svc := postgres.NewTenantService(db)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, MustTenant(t, db))
	}
	k, err := svc.CreateAPIKey(ctx, ids[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAPIKey(ctx, ids[1], nil); err != nil {
		t.Fatal(err)
	}
	if err := svc.RevokeAPIKey(ctx, ids[1], k.ID); err != nil {
		t.Fatal(err)
	}
	var seen []string
	keys := map[string]int{}
	for cursor := ""; ; {
		page, next, err := svc.ListTenants(ctx, holdfast.Page{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("a page of %d tenants, limit 2", len(page))
		}
		for _, tn := range page {
			seen = append(seen, tn.ID)
			keys[tn.ID] = tn.ActiveKeys
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != len(ids) {
		t.Fatalf("listed %v, want %v", seen, ids)
	}
	for i := range ids {
		if seen[i] != ids[i] {
			t.Fatalf("listed %v, want %v in order", seen, ids)
		}
	}
	if keys[ids[1]] != 2 || keys[ids[0]] != 1 {
		t.Fatalf("active keys %v: want 2 for the tenant with a revoked key among 3, 1 for the others", keys)
	}
	if _, _, err := svc.ListTenants(ctx, holdfast.Page{Cursor: "not-a-uuid"}); holdfast.ErrorCode(err) != holdfast.EINVALID {
		t.Fatalf("a malformed cursor: %v", err)
	}
}

// The outbox's backlog per topic: its rows and its oldest; past the cap
// the counts are lower bounds.
func TestOutboxBacklog_CountsUpToTheCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox`); err != nil { // no relay runs: the outbox is the test's
		t.Fatal(err)
	}
	backlog := func() map[string]holdfast.OutboxBacklog {
		t.Helper()
		list, err := postgres.OutboxBacklog(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]holdfast.OutboxBacklog{}
		for _, b := range list {
			m[b.Topic] = b
		}
		return m
	}
	if b := backlog(); b["events"].Rows != 0 || !b["events"].Oldest.IsZero() || b["jobs"].Rows != 0 || b["events"].AtLeast {
		t.Fatalf("an empty outbox: %+v", b)
	}
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	insert := func(topic string, n int, at time.Time) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic)
			SELECT gen_random_uuid(), $1, 'test', $2, '{}', $3 FROM generate_series(1, $4)`, tenant, at, topic, n); err != nil {
			t.Fatal(err)
		}
	}
	insert("jobs", 3, old)
	insert("events", 5, time.Now())
	b := backlog()
	if b["jobs"].Rows != 3 || !b["jobs"].Oldest.Equal(old) || b["events"].Rows != 5 || b["events"].AtLeast {
		t.Fatalf("3 jobs an hour old and 5 events: %+v", b)
	}
	// Each topic is counted on its own: events past the cap hide no job.
	insert("events", postgres.OutboxCountCap, time.Now())
	b = backlog()
	if !b["events"].AtLeast || b["jobs"].AtLeast || b["events"].Rows != postgres.OutboxCountCap || b["jobs"].Rows != 3 || !b["jobs"].Oldest.Equal(old) {
		t.Fatalf("past the cap: %+v", b)
	}
}
