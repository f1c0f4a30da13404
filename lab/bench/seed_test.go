package bench

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast/export"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/postgres"
)

// mustSeedEntries seeds a new account (no overdraft) of the tenant with n
// entries and returns its id.
func mustSeedEntries(tb testing.TB, db *postgres.DB, tenant string, n int) string {
	tb.Helper()
	account := MustSeed(tb, db, tenant, 1, 0, false)[0]
	if err := SeedEntries(context.Background(), db.Pool, tenant, account, n, nil); err != nil {
		tb.Fatal(err)
	}
	return account
}

func TestSeedEntries(t *testing.T) {
	ctx := context.Background()
	db, tenant, _ := setup(t)
	account := MustSeed(t, db, tenant, 1, 0, false)[0]
	const n = 5_000
	var calls, last int
	if err := SeedEntries(ctx, db.Pool, tenant, account, n, func(done int) { calls, last = calls+1, done }); err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last != n {
		t.Errorf("progress: %d calls, last %d; want some, last %d", calls, last, n)
	}
	dbtest.MustVerify(t, db, tenant)

	var entries, transfers, accounts int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM entries WHERE account_id = $2),
		(SELECT count(*) FROM transfers WHERE tenant_id = $1), (SELECT count(*) FROM accounts WHERE tenant_id = $1)`,
		tenant, account).Scan(&entries, &transfers, &accounts); err != nil {
		t.Fatal(err)
	}
	if entries != n || transfers != n || accounts != 3 {
		t.Fatalf("entries %d, transfers %d, accounts %d; want %d, %d, 3 (with SeedAccounts' equity)", entries, transfers, accounts, n, n)
	}

	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer exports.Close()
	var rows, debits, quoted int
	var prev export.Row
	err = exports.ExportEntries(ctx, tenant, account, export.Query{}, func(r *export.Row) error {
		if rows > 0 && (r.EntryID <= prev.EntryID || r.Time.Before(prev.Time) || r.RunningBalance != prev.RunningBalance+r.Amount) {
			t.Fatalf("row %d %+v does not follow %+v", rows, *r, prev)
		}
		if r.RunningBalance < 0 {
			t.Fatalf("row %d: negative running balance %d", rows, r.RunningBalance)
		}
		if r.Amount < 0 {
			debits++
		}
		if r.Description == `Invoice "Q3-2026"` {
			quoted++
		}
		rows++
		prev = *r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows != n || debits != n/2 || quoted == 0 {
		t.Fatalf("export: %d rows, %d debits, %d quoted descriptions; want %d, %d, some", rows, debits, quoted, n, n/2)
	}
}
