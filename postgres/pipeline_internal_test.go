package postgres

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast"
)

// A pipelined batch applies against the balances the batch before it said it
// would commit, and checks them under the locks: if they are not what the
// database holds (that batch failed), it writes nothing, and applyBatch runs
// it again locking first; if they are, it commits.
func TestPipelined_ChecksBalancesUnderLock(t *testing.T) {
	ctx := context.Background()
	db, tn, house, shop := houseAndShop(t, "pipeline")
	accts := NewAccountService(db)
	svc := NewTransferService(db)
	request := func() *transferRequest {
		return &transferRequest{ctx: ctx, tenantID: tn.ID, in: []holdfast.TransferCreate{
			{DebitAccountID: house.ID, CreditAccountID: shop.ID, Amount: 10, Currency: "USD"}}}
	}
	behind := func(final map[string]*holdfast.AccountState) *flight {
		prev := newFlight(nil)
		prev.ready(final)
		f := newFlight(nil)
		for id := range final {
			f.after[id] = prev
		}
		return f
	}
	balance := func(a *holdfast.Account) int64 {
		got, err := accts.FindAccount(ctx, tn.ID, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Balance
	}
	count := func(q string) int {
		var n int
		if err := db.Pool.QueryRow(ctx, q, tn.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The batch before said shop would hold 1,000, and then failed.
	never := map[string]*holdfast.AccountState{shop.ID: {TenantID: tn.ID, Currency: "USD", Balance: 1000}}
	err := svc.tryBatch(ctx, db.Pool, []*transferRequest{request()}, behind(never), true)
	if !isStale(err) {
		t.Fatalf("pipelined against balances the database does not hold: %v, want ledger_expect's serialization failure", err)
	}
	if n := count("SELECT count(*) FROM transfers WHERE tenant_id = $1"); n != 0 || balance(shop) != 0 {
		t.Fatalf("the failed attempt wrote %d transfers, shop holds %d", n, balance(shop))
	}
	r, f := request(), behind(never)
	if err := svc.applyBatch(ctx, db.Pool, []*transferRequest{r}, f); err != nil || r.err != nil {
		t.Fatalf("applyBatch: %v, %v", err, r.err)
	}
	if !f.stale || balance(shop) != 10 {
		t.Fatalf("after running again: stale %v (want true), shop holds %d (want 10)", f.stale, balance(shop))
	}

	// The batch before said what the database holds: the pipelined attempt
	// commits, and says what it commits to the batch after it.
	f = behind(map[string]*holdfast.AccountState{
		shop.ID:  {TenantID: tn.ID, Currency: "USD", Balance: 10},
		house.ID: {TenantID: tn.ID, Currency: "USD", AllowOverdraft: true, Balance: -10},
	})
	if err := svc.tryBatch(ctx, db.Pool, []*transferRequest{request()}, f, true); err != nil {
		t.Fatal(err)
	}
	if balance(shop) != 20 || !f.isReady() || f.final[shop.ID].Balance != 20 {
		t.Fatalf("shop holds %d (want 20); ready %v", balance(shop), f.isReady())
	}
	if err := VerifyLedger(ctx, db, tn.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running
		FROM entries WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)) e WHERE balance_after <> running`); n != 0 {
		t.Fatalf("%d entries whose balance_after is not the running sum", n)
	}
}

// houseAndShop returns a fresh database with a tenant named name and two of
// its USD accounts: house, which may go negative, and shop, which may not.
func houseAndShop(t *testing.T, name string) (db *DB, tn *holdfast.Tenant, house, shop *holdfast.Account) {
	t.Helper()
	ctx := context.Background()
	db = openMigrated(t)
	tn, _, err := NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	accts := NewAccountService(db)
	if house, err = accts.CreateAccount(ctx, tn.ID, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true}, nil); err != nil {
		t.Fatal(err)
	}
	if shop, err = accts.CreateAccount(ctx, tn.ID, holdfast.AccountCreate{Currency: "USD"}, nil); err != nil {
		t.Fatal(err)
	}
	return db, tn, house, shop
}
