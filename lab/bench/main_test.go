package bench

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// MustOpenDB returns a pool on a fresh, migrated database.
func MustOpenDB(tb testing.TB) *postgres.DB { return dbtest.MustOpenDB(tb) }

// setup returns a fresh, migrated database with a tenant: its id and an
// API key's secret.
func setup(tb testing.TB) (db *postgres.DB, tenant, secret string) {
	tb.Helper()
	db = MustOpenDB(tb)
	t, key, err := postgres.NewTenantService(db).CreateTenant(context.Background(), holdfast.TenantCreate{Name: tb.Name()}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return db, t.ID, key.Secret
}

// MustSeed seeds n accounts of the tenant with funding each.
func MustSeed(tb testing.TB, db *postgres.DB, tenant string, n int, funding int64, overdraft bool) []string {
	tb.Helper()
	ids, err := SeedAccounts(context.Background(), db.Pool, tenant, "USD", n, funding, overdraft)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ids) != n {
		tb.Fatalf("SeedAccounts returned %d ids, want %d", len(ids), n)
	}
	return ids
}

// MustVerify fails tb unless the tenant's ledger holds its invariants.
func MustVerify(tb testing.TB, db *postgres.DB, tenant string) {
	tb.Helper()
	if err := postgres.VerifyLedger(context.Background(), db, tenant); err != nil {
		tb.Fatal(err)
	}
}

// MustCount returns the integer the query yields.
func MustCount(tb testing.TB, db *postgres.DB, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// balance returns an account's balance.
func balance(tb testing.TB, db *postgres.DB, account string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT balance FROM accounts WHERE id = $1", account)
}

// ledgerRows counts the tenant's transfers, entries and idempotency keys.
func ledgerRows(tb testing.TB, db *postgres.DB, tenant string) [3]int64 {
	tb.Helper()
	return [3]int64{
		MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id WHERE a.tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant),
	}
}

// transfersMade counts the tenant's transfers other than the seeding's.
func transfersMade(tb testing.TB, db *postgres.DB, tenant string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description <> 'funding'", tenant)
}
