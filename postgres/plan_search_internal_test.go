package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// Every filter of GET /v1/transfers and the balance at a moment are served
// by an index, on a ledger of realistic size: 2,000 accounts, 200,000
// transfers (a tenth of them with metadata, 2,000 holds) and their 400,000
// entries, analyzed. No plan reads transfers or entries sequentially, and
// each uses the index it was made for.
func TestSearchAndBalancePlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	const tenant = "00000000-0000-0000-0000-0000000000aa"
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO tenants (id, name, created_at) VALUES ('`+tenant+`', 'plans', now());
		INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, created_at)
			SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(g), 12, '0'))::uuid, '`+tenant+`', 'USD', true, now()
			FROM generate_series(1, 2000) g;
		INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at,
				status, pending, metadata)
			SELECT '`+tenant+`', gen_random_uuid(),
				('00000000-0000-0000-0001-' || lpad(to_hex(1 + g % 2000), 12, '0'))::uuid,
				('00000000-0000-0000-0001-' || lpad(to_hex(1 + (g * 7 + 1) % 2000), 12, '0'))::uuid,
				1 + g % 10000, 'USD', '', now() - make_interval(secs => 200000 - g),
				CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'posted' END, g % 100 = 0,
				CASE WHEN g % 10 = 0 THEN jsonb_build_object('order', 'o-' || g) ELSE '{}' END
			FROM generate_series(1, 200000) g;
		INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
			SELECT a, t.id, s * t.amount, 0, t.created_at FROM transfers t,
				LATERAL (VALUES (t.debit_account_id, -1), (t.credit_account_id, 1)) AS v(a, s);
		ANALYZE accounts; ANALYZE transfers; ANALYZE entries`); err != nil {
		t.Fatal(err)
	}
	account := "00000000-0000-0000-0001-" + fmt.Sprintf("%012x", 42)
	since := time.Now().Add(-time.Hour)
	amount := int64(9000)
	page := holdfast.Page{Limit: 50}
	cases := []struct {
		name  string
		q     holdfast.TransferQuery
		index string
	}{
		{"newest first", holdfast.TransferQuery{}, "transfers_tenant_created"},
		{"account", holdfast.TransferQuery{AccountID: account}, "entries_account_time"},
		{"pending", holdfast.TransferQuery{Status: holdfast.StatusPending}, "transfers_tenant_unposted"},
		{"created since", holdfast.TransferQuery{CreatedGTE: &since}, "transfers_tenant_created"},
		{"amount", holdfast.TransferQuery{AmountGTE: &amount}, "transfers_tenant_created"},
		{"metadata", holdfast.TransferQuery{Metadata: map[string]string{"order": "o-1230"}}, "transfers_metadata"},
	}
	for _, c := range cases {
		sql, args, err := searchSQL(tenant, c.q, page)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, db, c.name, sql, args, c.index)
	}
	var holds, holdTenants []string
	rows, _ := db.Pool.Query(ctx, "SELECT id::text FROM transfers WHERE status = 'pending' LIMIT 50")
	for rows.Next() {
		var id string
		rows.Scan(&id)
		holds, holdTenants = append(holds, id), append(holdTenants, tenant)
	}
	statuses := make([]string, len(holds))
	for i := range statuses {
		statuses[i] = holdfast.StatusPosted
	}
	checkPlan(t, db, "resolve holds", resolveHoldsSQL, []any{UUIDArray(holdTenants), UUIDArray(holds), TextArray(statuses), len(holds)}, "transfers_pkey")
	checkPlan(t, db, "existing transfers", findExistingSQL, []any{UUIDArray(holdTenants), UUIDArray(holds)}, "transfers_pkey")
	checkPlan(t, db, "due holds", dueHoldsSQL, []any{time.Now(), 500}, "transfers_expiry")
	checkPlan(t, db, "balance at", fmt.Sprintf(balanceAtSQL, "(VALUES ($3::timestamptz))"), []any{tenant, account, since}, "entries_account_time")
	checkPlan(t, db, "balance history", fmt.Sprintf(balanceAtSQL, "generate_series($3::timestamptz, $4::timestamptz, make_interval(secs => $5))"),
		[]any{tenant, account, since.Add(-48 * time.Hour), since, 3600.0}, "entries_account_time")
}

// checkPlan fails t unless sql's plan uses index and reads neither
// transfers nor entries sequentially.
func checkPlan(t *testing.T, db *DB, name, sql string, args []any, index string) {
	t.Helper()
	var plan []byte
	// The batch's planner settings, as a batch plans its statements.
	tx, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), batchSettingsSQL, "on"); err != nil {
		t.Fatal(err)
	}
	err = tx.QueryRow(context.Background(), "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var top []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &top); err != nil || len(top) != 1 {
		t.Fatalf("%s: plan %s: %v", name, plan, err)
	}
	var nodes []string
	used := false
	var walk func(n planNode)
	walk = func(n planNode) {
		nodes = append(nodes, n.Type+" "+n.Relation+" "+n.Index)
		if n.Type == "Seq Scan" && (n.Relation == "transfers" || n.Relation == "entries") {
			t.Errorf("%s: a sequential scan of %s", name, n.Relation)
		}
		if n.Index == index {
			used = true
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(top[0].Plan)
	if !used {
		t.Errorf("%s: the plan does not use %s: %s", name, index, strings.Join(nodes, "; "))
	}
	t.Logf("%s: %s", name, strings.Join(nodes, "; "))
}

type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Plans    []planNode `json:"Plans"`
}

// The batch's update of the holds it resolved seeks each by primary key in
// the steady state of a busy ledger: holds are resolved soon after they are
// made, so the statistics, taken here before any hold is pending, show none.
// There the planner preferred transfers_tenant_unposted, whose (tenant,
// 'pending') range it then walked for every hold, with the entries of every
// hold resolved since the last vacuum.
func TestResolveHolds_SeeksByPrimaryKeyWhenFewArePending(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	const tenant = "00000000-0000-0000-0000-0000000000bb"
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO tenants (id, name, created_at) VALUES ('`+tenant+`', 'plans', now());
		INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at,
				status, pending)
			SELECT '`+tenant+`', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'USD', '', now(),
				CASE WHEN g % 2 = 0 THEN 'posted' ELSE 'voided' END, g % 3 = 0
			FROM generate_series(1, 50000) g;
		ANALYZE transfers;
		UPDATE transfers SET status = 'pending' WHERE id IN (SELECT id FROM transfers WHERE pending LIMIT 40)`); err != nil {
		t.Fatal(err)
	}
	rows, _ := db.Pool.Query(ctx, "SELECT id::text FROM transfers WHERE status = 'pending'")
	holds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(holds) == 0 {
		t.Fatalf("holds: %v, %v", holds, err)
	}
	tenants, statuses := make([]string, len(holds)), make([]string, len(holds))
	for i := range holds {
		tenants[i], statuses[i] = tenant, holdfast.StatusPosted
	}
	checkPlan(t, db, "resolve holds", resolveHoldsSQL, []any{UUIDArray(tenants), UUIDArray(holds), TextArray(statuses), len(holds)}, "transfers_pkey")
}
