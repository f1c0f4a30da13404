package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// A batch reads and updates the accounts it touches by primary key, on a
// server left at PostgreSQL's default costs (random_page_cost 4, set for
// spinning disks): there a batch touching 160 of 10,000 accounts updated them
// by hashing a sequential scan of the whole table, inside its row locks.
func TestBatchPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO tenants (id, name, created_at) VALUES ('00000000-0000-0000-0000-000000000001', 'plans', now());
		INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, balance, created_at)
			SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'USD', false, 1000, now()
			FROM generate_series(1, 10000);
		ANALYZE accounts`); err != nil {
		t.Fatal(err)
	}
	rows, _ := db.Pool.Query(ctx, "SELECT id::text FROM accounts ORDER BY random() LIMIT 160")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	balances := make([]int64, len(ids))
	tenants := slices.Repeat([]string{"00000000-0000-0000-0000-000000000001"}, len(ids))

	statements := []struct {
		name string
		sql  string
		args []any
	}{
		{"lock", lockAccountsSQL, []any{UUIDArray(tenants), UUIDArray(ids)}},
		{"update", updateBalancesSQL, []any{UUIDArray(ids), balances, balances, balances}},
	}
	scans := func(settings bool, sql string, args []any) []string {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL random_page_cost = 4"); err != nil {
			t.Fatal(err)
		}
		if settings {
			if _, err := tx.Exec(ctx, batchSettingsSQL, "on"); err != nil {
				t.Fatal(err)
			}
		}
		var plan []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		return accountScans(t, plan)
	}
	for _, s := range statements {
		got := scans(true, s.sql, s.args)
		if len(got) == 0 {
			t.Errorf("%s: the plan does not read accounts", s.name)
		}
		for _, node := range got {
			if !strings.HasPrefix(node, "Index") && node != "Bitmap Heap Scan" {
				t.Errorf("%s: accounts read by %s, want the primary key (plan: %v)", s.name, node, got)
			}
		}
		// Without the batch's settings the planner is expected to pick the
		// sequential scan this test guards against; say so if it no longer
		// does, so the test's premise stays visible.
		t.Logf("%s without the batch's settings: %v", s.name, scans(false, s.sql, s.args))
	}
}

// accountScans returns the node types of the plan's nodes that read the
// accounts table.
func accountScans(t *testing.T, plan []byte) []string {
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
	var out []string
	var walk func(n node)
	walk = func(n node) {
		if n.Relation == "accounts" && n.Type != "ModifyTable" {
			out = append(out, n.Type)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(top[0].Plan)
	return out
}

// openMigrated returns a fresh database with the schema, closed at the
// test's end.
func openMigrated(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}
