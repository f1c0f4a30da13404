package naive_test

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// setup returns a fresh, migrated database with a tenant: its id and an
// API key's secret.
func setup(tb testing.TB) (db *postgres.DB, tenant, secret string) {
	tb.Helper()
	db = dbtest.MustOpenDB(tb)
	tenant, secret = dbtest.MustTenant(tb, db)
	return db, tenant, secret
}

// MustSeed seeds n accounts of the tenant with funding each.
func MustSeed(tb testing.TB, db *postgres.DB, tenant string, n int, funding int64, overdraft bool) []string {
	tb.Helper()
	ids, err := bench.SeedAccounts(context.Background(), db.Pool, tenant, "USD", n, funding, overdraft)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ids) != n {
		tb.Fatalf("SeedAccounts returned %d ids, want %d", len(ids), n)
	}
	return ids
}

// mustSeedEntries seeds a new account (no overdraft) of the tenant with n
// entries and returns its id.
func mustSeedEntries(tb testing.TB, db *postgres.DB, tenant string, n int) string {
	tb.Helper()
	account := MustSeed(tb, db, tenant, 1, 0, false)[0]
	if err := bench.SeedEntries(context.Background(), db.Pool, tenant, account, n, nil); err != nil {
		tb.Fatal(err)
	}
	return account
}
