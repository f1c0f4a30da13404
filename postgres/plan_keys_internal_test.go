package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The statements that look an Idempotency-Key up keep an index plan on a
// key table of three epochs of 150,000 keys each, analyzed:
// the batch's read of its keys, planned for its arguments, and the claim,
// completion and release of a key up front, planned generically as pgx's
// prepared statements are after five runs. Each reads every partition that
// holds keys by its primary key. (An empty partition, created ahead, may be
// scanned: it has no page to read, and the ANALYZE that follows its first
// keys invalidates every plan made before.)
func TestKeyPlansAtTenTimesUseIndexes(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	r, err := NewKeyRotator(db, KeyRotatorConfig{Period: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	const tenant = "00000000-0000-0000-0000-0000000000bb"
	var full []string // the partitions with keys; the others are empty, and cost nothing to scan
	for range 3 {
		var epoch int64
		if err := db.Pool.QueryRow(ctx, "SELECT idempotency_epoch()").Scan(&epoch); err != nil {
			t.Fatal(err)
		}
		full = append(full, fmt.Sprintf("idempotency_keys_e%d", epoch))
		if _, err := db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, outcome, epoch)
			SELECT '`+tenant+`', 'k-' || $1::bigint || '-' || g, '\\x00'::bytea, now(), '{"result":[]}', $1
			FROM generate_series(1, 150000) g`, epoch); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, "ANALYZE idempotency_keys"); err != nil {
		t.Fatal(err)
	}

	tenants, keys := UUIDArray{tenant, tenant}, TextArray{"k-1-17", "k-2-40000"}
	statements := []struct {
		name, mode, sql string
		args            []any
	}{
		{"batch read", "force_custom_plan", `SELECT i.tenant_id, i.key, i.fingerprint, i.outcome
			FROM idempotency_keys i JOIN unnest($1::uuid[], $2::text[]) AS x(tenant_id, key) USING (tenant_id, key)`,
			[]any{tenants, keys}},
		{"claim", "force_generic_plan", insertKeySQL, []any{tenant, "k-2-5", []byte("fp"), "00000000-0000-0000-0000-000000000001"}},
		{"claim read", "force_generic_plan", `SELECT fingerprint, lock_token, outcome FROM idempotency_keys
			WHERE tenant_id = $1 AND key = $2`, []any{tenant, "k-1-9"}},
		{"complete", "force_generic_plan", completeSQL, []any{tenant, "k-1-9", "00000000-0000-0000-0000-000000000001", []byte("{}")}},
	}
	for _, s := range statements {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('plan_cache_mode', $1, true)", s.mode); err != nil {
			t.Fatal(err)
		}
		var plan []byte
		err = tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+s.sql, s.args...).Scan(&plan)
		tx.Rollback(ctx)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := relationScans(t, plan, "idempotency_keys_e")
		for _, rel := range full {
			node, ok := got[rel]
			switch {
			case !ok:
				t.Errorf("%s: %s is not read (plan: %v)", s.name, rel, got)
			case !strings.HasPrefix(node, "Index") && node != "Bitmap Heap Scan":
				t.Errorf("%s: %s read by %s, want its primary key (plan: %v)", s.name, rel, node, got)
			}
		}
	}
}

// relationScans returns the node type of each plan node that reads a
// relation whose name starts with prefix, by relation.
func relationScans(t *testing.T, plan []byte, prefix string) map[string]string {
	t.Helper()
	type node struct {
		Type     string `json:"Node Type"`
		Relation string `json:"Relation Name"`
		Plans    []node `json:"Plans"`
	}
	var top []struct {
		Plan node `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &top); err != nil || len(top) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	out := map[string]string{}
	var walk func(n node)
	walk = func(n node) {
		if prev, seen := out[n.Relation]; strings.HasPrefix(n.Relation, prefix) && n.Type != "ModifyTable" &&
			(!seen || strings.HasPrefix(prev, "Index")) {
			out[n.Relation] = n.Type // a relation read twice: the worse read
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(top[0].Plan)
	return out
}
