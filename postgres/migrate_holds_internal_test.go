package postgres

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast"
)

// Migrations 0018 and 0019 upgrade a ledger with data: its accounts,
// transfers and entries stay as they were and verify, and holds and limits
// then work on them.
func TestMigration_HoldsOnALedgerWithData(t *testing.T) {
	ctx := context.Background()
	db := openMigratedTo(t, 15)
	tenant, house, alice := "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000b1", "00000000-0000-0000-0000-0000000000b2"
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO tenants (id, name, created_at) VALUES ('`+tenant+`', 'before', now());
		INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, balance, created_at) VALUES
			('`+house+`', '`+tenant+`', 'USD', true, -100, now()), ('`+alice+`', '`+tenant+`', 'USD', false, 100, now());
		INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
			VALUES ('`+tenant+`', '00000000-0000-0000-0000-0000000000c1', '`+house+`', '`+alice+`', 100, 'USD', 'old', now());
		INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at) VALUES
			('`+house+`', '00000000-0000-0000-0000-0000000000c1', -100, -100, now()),
			('`+alice+`', '00000000-0000-0000-0000-0000000000c1', 100, 100, now())`); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := VerifyLedger(ctx, db, tenant); err != nil {
		t.Fatal(err)
	}
	old, err := NewTransferService(db).FindTransfer(ctx, tenant, "00000000-0000-0000-0000-0000000000c1")
	if err != nil || old.Status != holdfast.StatusPosted || old.Pending || old.Description != "old" {
		t.Fatalf("the old transfer after the migration: %+v, %v", old, err)
	}
	svc := NewTransferService(db)
	out, _, err := svc.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: tenant, Transfers: []holdfast.TransferCreate{{
		DebitAccountID: alice, CreditAccountID: house, Amount: 60, Currency: "USD", Pending: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.ResolveTransfer(ctx, holdfast.ResolveRequest{TenantID: tenant, PendingID: out[0].ID, Action: holdfast.StatusPosted}); err != nil {
		t.Fatal(err)
	}
	a, err := NewAccountService(db).FindAccount(ctx, tenant, alice)
	if err != nil || a.Balance != 40 || a.Available != 40 || a.PendingDebits != 0 {
		t.Fatalf("alice after a hold and its post: %+v, %v", a, err)
	}
	if err := VerifyLedger(ctx, db, tenant); err != nil {
		t.Fatal(err)
	}
}
