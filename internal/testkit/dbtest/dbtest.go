// Package dbtest opens Holdfast's database for a test: a pool on a fresh,
// migrated PostgreSQL database from package pgtest. It imports the postgres
// adapter and nothing above it, so the tests of any package may use it
// without linking the HTTP layer or the application.
//
// Its test binary must run through pgtest.Main (see there).
package dbtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// MustOpenDB returns a pool of at most 20 connections on a fresh, migrated
// database, closed when tb ends; it fails tb if the database cannot be
// created, opened or migrated.
func MustOpenDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(tb), MaxConns: 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	if err := postgres.Migrate(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	return db
}

// MustTenant creates a tenant named after tb on db and returns its id and
// its first API key's secret; it fails tb if it cannot.
func MustTenant(tb testing.TB, db *postgres.DB) (tenant, secret string) {
	tb.Helper()
	t, key, err := postgres.NewTenantService(db).CreateTenant(context.Background(), holdfast.TenantCreate{Name: tb.Name()}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return t.ID, key.Secret
}

// MustCount returns the integer the query yields; it fails tb if the query does.
func MustCount(tb testing.TB, db *postgres.DB, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// MustVerify fails tb unless the tenant's ledger holds its invariants (see
// postgres.VerifyLedger).
func MustVerify(tb testing.TB, db *postgres.DB, tenant string) {
	tb.Helper()
	if err := postgres.VerifyLedger(context.Background(), db, tenant); err != nil {
		tb.Fatal(err)
	}
}

// MustPool returns a pool on the database at url, closed when tb ends.
func MustPool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Balance returns an account's balance.
func Balance(tb testing.TB, db *postgres.DB, account string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT balance FROM accounts WHERE id = $1", account)
}

// LedgerRows counts the tenant's transfers, entries and idempotency keys.
func LedgerRows(tb testing.TB, db *postgres.DB, tenant string) [3]int64 {
	tb.Helper()
	return [3]int64{
		MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id WHERE a.tenant_id = $1", tenant),
		MustCount(tb, db, "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant),
	}
}

// TransfersMade counts the tenant's transfers other than those of a
// seeding (whose description is "funding").
func TransfersMade(tb testing.TB, db *postgres.DB, tenant string) int64 {
	tb.Helper()
	return MustCount(tb, db, "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND description <> 'funding'", tenant)
}
