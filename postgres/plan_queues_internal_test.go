package postgres

import (
	"context"
	"strings"
	"testing"
)

// The relay's claim and delete, and a transfer found by its id, keep their
// index plans on tables far larger than the benchmarks leave them (an
// outbox backlog of 300,000 rows, 300,000 transfers, analyzed), planned
// generically as pgx's prepared statements are after five runs, and for
// their arguments.
func TestQueuePlansAtTenTimesUseIndexes(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	const tenant = "00000000-0000-0000-0000-0000000000cc"
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO outbox (id, tenant_id, type, occurred_at, data)
			SELECT gen_random_uuid(), '`+tenant+`', 'transfer.posted', now(), '{}' FROM generate_series(1, 300000);
		INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
			SELECT '`+tenant+`', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'USD', '', now()
			FROM generate_series(1, 300000);
		ANALYZE outbox; ANALYZE transfers`); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := db.Pool.QueryRow(ctx, "SELECT id::text FROM transfers LIMIT 1").Scan(&id); err != nil {
		t.Fatal(err)
	}
	statements := []struct {
		name, relation, sql string
		args                []any
	}{
		{"outbox claim", "outbox", `SELECT seq, coalesce(cardinality(event_ids), 1) FROM outbox
			WHERE seq > $2 ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, []any{1000, int64(0)}},
		{"outbox delete", "outbox", `DELETE FROM outbox WHERE seq = ANY($1)`, []any{Int8Array{1, 2, 3}}},
		{"transfer by id", "transfers", "SELECT " + transferColumns + " FROM transfers t WHERE t.tenant_id = $1 AND t.id = $2",
			[]any{tenant, id}},
	}
	for _, s := range statements {
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('plan_cache_mode', $1, true)", mode); err != nil {
				t.Fatal(err)
			}
			var plan []byte
			err = tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+s.sql, s.args...).Scan(&plan)
			tx.Rollback(ctx)
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			got := relationScans(t, plan, s.relation)
			node, ok := got[s.relation]
			if !ok || !strings.HasPrefix(node, "Index") && node != "Bitmap Heap Scan" {
				t.Errorf("%s, %s: %s read by %q, want an index (plan: %s)", s.name, mode, s.relation, node, plan)
			}
		}
	}
}
