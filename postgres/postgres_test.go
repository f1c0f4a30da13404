package postgres_test

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

// MustTenant creates a tenant and returns its id.
func MustTenant(tb testing.TB, db *postgres.DB) string {
	tb.Helper()
	t, _, err := postgres.NewTenantService(db).CreateTenant(context.Background(), holdfast.TenantCreate{Name: tb.Name()}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return t.ID
}

// MustAccount creates an account of the tenant.
func MustAccount(tb testing.TB, db *postgres.DB, tenant, currency string, overdraft bool) *holdfast.Account {
	tb.Helper()
	a, err := postgres.NewAccountService(db).CreateAccount(context.Background(), tenant,
		holdfast.AccountCreate{Currency: currency, AllowOverdraft: overdraft}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// MustTransfers returns a started transfer service on db, stopped when the
// test ends.
func MustTransfers(tb testing.TB, db *postgres.DB, cfg postgres.TransferConfig) *postgres.TransferService {
	tb.Helper()
	svc, err := postgres.NewTransferServiceWith(db, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(svc.Stop)
	return svc
}

func TestMigrate_Twice(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	if err := postgres.Migrate(context.Background(), db); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}
