package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// ledger is a test bundle: a database, a tenant and the transfer service,
// with group commit on or off.
type ledger struct {
	db        *postgres.DB
	tenant    string
	transfers *postgres.TransferService
	accounts  *postgres.AccountService
}

func setup(t *testing.T, groupCommit bool) *ledger {
	t.Helper()
	db := MustOpenDB(t)
	return &ledger{db: db, tenant: MustTenant(t, db), accounts: postgres.NewAccountService(db),
		transfers: MustTransfers(t, db, postgres.TransferConfig{GroupCommit: groupCommit, Writer: postgres.WriterConfig{MaxBatch: 64}})}
}

func (l *ledger) transfer(from, to *holdfast.Account, amount int64) (*holdfast.Transfer, error) {
	out, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
		DebitAccountID: from.ID, CreditAccountID: to.ID, Amount: amount, Currency: from.Currency}}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (l *ledger) balance(t *testing.T, a *holdfast.Account) int64 {
	t.Helper()
	got, err := l.accounts.FindAccount(context.Background(), l.tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got.Balance
}

// bothModes runs a test with each request in its own transaction and with group commit.
func bothModes(t *testing.T, f func(t *testing.T, l *ledger)) {
	for _, gc := range []bool{false, true} {
		t.Run(fmt.Sprintf("group_commit=%v", gc), func(t *testing.T) {
			t.Parallel()
			f(t, setup(t, gc))
		})
	}
}

func TestTransfer_MovesMoney(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		alice := MustAccount(t, l.db, l.tenant, "USD", false)
		tr, err := l.transfer(house, alice, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Amount != 1000 || tr.DebitAccountID != house.ID || tr.CreditAccountID != alice.ID {
			t.Fatalf("transfer = %+v", tr)
		}
		if got := l.balance(t, house); got != -1000 {
			t.Fatalf("house balance = %d, want -1000", got)
		}
		if got := l.balance(t, alice); got != 1000 {
			t.Fatalf("alice balance = %d, want 1000", got)
		}
		found, err := l.transfers.FindTransfer(context.Background(), l.tenant, tr.ID)
		if err != nil || !reflect.DeepEqual(found, tr) {
			t.Fatalf("FindTransfer = %+v, %v; want %+v", found, err, tr)
		}
	})
}

func TestTransfer_InsufficientFundsWritesNothing(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		alice := MustAccount(t, l.db, l.tenant, "USD", false)
		bob := MustAccount(t, l.db, l.tenant, "USD", false)
		if _, err := l.transfer(house, alice, 100); err != nil {
			t.Fatal(err)
		}
		if _, err := l.transfer(alice, bob, 101); !holdfast.IsCode(err, holdfast.EINSUFFICIENT) {
			t.Fatalf("err = %v, want %s", err, holdfast.EINSUFFICIENT)
		}
		if got := l.balance(t, alice); got != 100 {
			t.Fatalf("alice balance = %d, want 100", got)
		}
		var n int
		l.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM entries WHERE account_id = $1", bob.ID).Scan(&n)
		if n != 0 {
			t.Fatalf("bob has %d entries after a refused transfer", n)
		}
		if _, err := l.transfer(alice, bob, 100); err != nil {
			t.Fatalf("exact balance: %v", err)
		}
	})
}

func TestTransfer_Refusals(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		usd := MustAccount(t, l.db, l.tenant, "USD", true)
		usd2 := MustAccount(t, l.db, l.tenant, "USD", true)
		eur := MustAccount(t, l.db, l.tenant, "EUR", true)
		other := MustTenant(t, l.db)
		foreign := MustAccount(t, l.db, other, "USD", true)

		if _, err := l.transfer(usd, eur, 1); !holdfast.IsCode(err, holdfast.ECURRENCY) {
			t.Errorf("currency mismatch: err = %v", err)
		}
		if _, err := l.transfer(usd, foreign, 1); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
			t.Errorf("another tenant's account: err = %v", err)
		}
		missing := &holdfast.Account{ID: uuid.NewString(), Currency: "USD"}
		if _, err := l.transfer(missing, usd, 1); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
			t.Errorf("unknown account: err = %v", err)
		}
		if _, err := l.transfer(usd, usd, 1); !holdfast.IsCode(err, holdfast.EINVALID) {
			t.Errorf("debit = credit: err = %v", err)
		}
		for _, amount := range []int64{0, -5, holdfast.MaxAmount + 1} {
			if _, err := l.transfer(usd, usd2, amount); !holdfast.IsCode(err, holdfast.EINVALID) {
				t.Errorf("amount %d: err = %v", amount, err)
			}
		}
		if got := l.balance(t, usd); got != 0 {
			t.Errorf("balance after refusals = %d", got)
		}
	})
}

func TestTransfer_ClientIDIsIdempotent(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		a := MustAccount(t, l.db, l.tenant, "USD", true)
		b := MustAccount(t, l.db, l.tenant, "USD", true)
		id := uuid.NewString()
		in := holdfast.TransferCreate{ID: id, DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 7, Currency: "USD", Description: "x"}
		first, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{in}})
		if err != nil {
			t.Fatal(err)
		}
		again, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{in}})
		if err != nil || !reflect.DeepEqual(again[0], first[0]) {
			t.Fatalf("same id, same fields: %+v, %v; want %+v", again, err, first[0])
		}
		changed := in
		changed.Amount = 8
		if _, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{changed}}); !holdfast.IsCode(err, holdfast.ETRANSFEREXISTS) {
			t.Fatalf("same id, other amount: err = %v", err)
		}
		if got := l.balance(t, b); got != 7 {
			t.Fatalf("balance = %d, want 7 (applied once)", got)
		}
		// Another tenant may use the same id: ids are scoped per tenant.
		other := MustTenant(t, l.db)
		oa := MustAccount(t, l.db, other, "USD", true)
		ob := MustAccount(t, l.db, other, "USD", true)
		in2 := holdfast.TransferCreate{ID: id, DebitAccountID: oa.ID, CreditAccountID: ob.ID, Amount: 9, Currency: "USD"}
		if _, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: other, Transfers: []holdfast.TransferCreate{in2}}); err != nil {
			t.Fatalf("same id in another tenant: %v", err)
		}
	})
}

func TestTransfer_ClientIDConcurrent(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		a := MustAccount(t, l.db, l.tenant, "USD", true)
		b := MustAccount(t, l.db, l.tenant, "USD", true)
		in := holdfast.TransferCreate{ID: uuid.NewString(), DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 5, Currency: "USD"}
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Go(func() {
				_, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{in}})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent same id: %v", err)
			}
		}
		if got := l.balance(t, b); got != 5 {
			t.Fatalf("balance = %d, want 5 (applied once)", got)
		}
	})
}

func TestTransfer_LinkedAllOrNothing(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		a := MustAccount(t, l.db, l.tenant, "USD", false)
		b := MustAccount(t, l.db, l.tenant, "USD", false)
		set := []holdfast.TransferCreate{
			{DebitAccountID: house.ID, CreditAccountID: a.ID, Amount: 100, Currency: "USD"},
			{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 60, Currency: "USD"},
			{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 60, Currency: "USD"}, // a has only 40 left
		}
		_, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: set, Linked: true})
		var e *holdfast.Error
		if !errors.As(err, &e) || e.Code != holdfast.EINSUFFICIENT || e.Extensions["index"] != 2 {
			t.Fatalf("err = %v, want insufficient funds at index 2", err)
		}
		for _, acct := range []*holdfast.Account{house, a, b} {
			if got := l.balance(t, acct); got != 0 {
				t.Fatalf("balance of %s = %d after a failed linked set", acct.ID, got)
			}
		}
		out, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: set[:2], Linked: true})
		if err != nil || len(out) != 2 {
			t.Fatalf("linked set: %v, %v", out, err)
		}
		if l.balance(t, a) != 40 || l.balance(t, b) != 60 {
			t.Fatalf("balances after linked set: a=%d b=%d", l.balance(t, a), l.balance(t, b))
		}
	})
}

func TestTransfer_ListNewestFirst(t *testing.T) {
	t.Parallel()
	l := setup(t, false)
	a := MustAccount(t, l.db, l.tenant, "USD", true)
	b := MustAccount(t, l.db, l.tenant, "USD", true)
	var want []string
	for i := range 7 {
		tr, err := l.transfer(a, b, int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{tr.ID}, want...)
	}
	var got []string
	page := holdfast.Page{Limit: 3}
	for {
		ts, next, err := l.transfers.ListTransfers(context.Background(), l.tenant, b.ID, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			got = append(got, tr.ID)
		}
		if next == "" {
			break
		}
		page.Cursor = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	other := MustTenant(t, l.db)
	if _, _, err := l.transfers.ListTransfers(context.Background(), other, b.ID, holdfast.Page{}); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("another tenant listing: err = %v", err)
	}
}

// TestTransfer_BankInvariant hammers a few accounts from many goroutines,
// cancelling some calls midway, and checks that no money is created or
// lost, no balance goes negative, every balance equals its entries, and
// every transfer a caller saw succeed is stored exactly once.
func TestTransfer_BankInvariant(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		const accounts, workers, perWorker, initial = 12, 40, 100, 1000
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		accts := make([]*holdfast.Account, accounts)
		for i := range accts {
			accts[i] = MustAccount(t, l.db, l.tenant, "USD", false)
			if _, err := l.transfer(house, accts[i], initial); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for range perWorker {
					from := accts[rng.IntN(2)] // two hot accounts
					if rng.IntN(2) == 0 {
						from = accts[rng.IntN(accounts)]
					}
					to := accts[rng.IntN(accounts)]
					if from == to {
						continue
					}
					ctx, cancel := context.WithCancel(context.Background())
					if rng.IntN(10) == 0 {
						time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
					}
					out, _, err := l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
						DebitAccountID: from.ID, CreditAccountID: to.ID, Amount: int64(1 + rng.IntN(300)), Currency: "USD"}}})
					cancel()
					switch {
					case err == nil:
						mu.Lock()
						seen[out[0].ID]++
						mu.Unlock()
					case holdfast.IsCode(err, holdfast.EINSUFFICIENT), errors.Is(err, context.Canceled):
					default:
						t.Errorf("transfer: %v", err)
					}
				}
			})
		}
		wg.Wait()
		AssertLedgerConsistent(t, l.db, l.tenant)
		var total int64
		l.db.Pool.QueryRow(context.Background(), "SELECT coalesce(sum(balance), 0) FROM accounts WHERE tenant_id = $1 AND NOT allow_overdraft", l.tenant).Scan(&total)
		if total != accounts*initial {
			t.Errorf("customer money = %d, want %d", total, accounts*initial)
		}
		for id := range seen {
			var n int
			l.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND id = $2", l.tenant, id).Scan(&n)
			if n != 1 {
				t.Errorf("transfer %s acknowledged but stored %d times", id, n)
			}
		}
		if len(seen) < workers*perWorker/4 {
			t.Errorf("only %d transfers succeeded; the test exercised too little", len(seen))
		}
	})
}

// AssertLedgerConsistent fails t if the tenant's ledger breaks an invariant
// (see postgres.VerifyLedger).
func AssertLedgerConsistent(t *testing.T, db *postgres.DB, tenant string) {
	t.Helper()
	if err := postgres.VerifyLedger(context.Background(), db, tenant); err != nil {
		t.Fatal(err)
	}
}

// blockRow holds the row lock of account id in another transaction until
// the returned release is called (or the test ends).
func blockRow(t *testing.T, db *postgres.DB, id string) (release func()) {
	t.Helper()
	tx, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := tx.Exec(context.Background(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	return func() { tx.Rollback(context.Background()) }
}

// transferExists reports whether the tenant has a transfer with the id.
func transferExists(t *testing.T, db *postgres.DB, tenant, id string) bool {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE tenant_id = $1 AND id = $2", tenant, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestTransfer_DeadlineAfterItStartedGetsTheOutcome: a caller whose
// context ends while its transfer waits on a row lock inside the
// transaction that applies it is never told "cancelled" for a transfer
// that then commits. Refused, the transfer does not exist; otherwise the
// call returns the transfer.
func TestTransfer_DeadlineAfterItStartedGetsTheOutcome(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		alice := MustAccount(t, l.db, l.tenant, "USD", false)
		release := blockRow(t, l.db, alice.ID)
		id := uuid.NewString()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
				ID: id, DebitAccountID: house.ID, CreditAccountID: alice.ID, Amount: 5, Currency: "USD"}}})
			done <- err
		}()
		waitFor(t, func() bool { return lockWaiters(t, l.db) == 1 }) // its transaction has begun
		cancel()
		release()
		err := <-done
		// A later transfer on the same account commits after the first's
		// transaction has ended, whichever way it ended.
		if _, err := l.transfer(house, alice, 1); err != nil {
			t.Fatal(err)
		}
		exists := transferExists(t, l.db, l.tenant, id)
		switch {
		case err == nil && !exists:
			t.Fatal("the call succeeded but the transfer does not exist")
		case err != nil && exists:
			t.Fatalf("the call was refused (%v) but the transfer exists", err)
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("err = %v, want a refusal for the cancelled context", err)
		}
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// TestTransfer_ShortDeadlinesNeverRefuseWhatCommits sends transfers with
// client ids under deadlines shorter than a batch, from many goroutines:
// every call refused with its context's error left no transfer, and every
// transfer that exists was answered with success.
func TestTransfer_ShortDeadlinesNeverRefuseWhatCommits(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		const workers, perWorker = 16, 25
		house := MustAccount(t, l.db, l.tenant, "USD", true)
		accts := []*holdfast.Account{
			MustAccount(t, l.db, l.tenant, "USD", true), MustAccount(t, l.db, l.tenant, "USD", true),
			MustAccount(t, l.db, l.tenant, "USD", true), MustAccount(t, l.db, l.tenant, "USD", true),
		}
		var mu sync.Mutex
		answered := map[string]error{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 11))
				for range perWorker {
					id := uuid.NewString()
					// Some without a deadline, so that connections a
					// deadline cut off are replaced and some transfers
					// are seen to succeed.
					deadline := time.Duration(rng.IntN(20_000)) * time.Microsecond
					if rng.IntN(4) == 0 {
						deadline = time.Hour
					}
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					_, _, err := l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
						ID: id, DebitAccountID: house.ID, CreditAccountID: accts[rng.IntN(len(accts))].ID, Amount: 1, Currency: "USD"}}})
					cancel()
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("transfer: %v", err)
					}
					mu.Lock()
					answered[id] = err
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		var refused, refusedButStored int
		for id, err := range answered {
			exists := transferExists(t, l.db, l.tenant, id)
			switch {
			case err == nil && !exists:
				t.Errorf("transfer %s answered success but does not exist", id)
			case err != nil:
				refused++
				if exists {
					refusedButStored++
				}
			}
		}
		if refusedButStored > 0 {
			t.Errorf("%d of %d refused transfers exist", refusedButStored, refused)
		}
		var stored int
		l.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE tenant_id = $1", l.tenant).Scan(&stored)
		if want := len(answered) - refused; stored != want {
			t.Errorf("%d transfers stored, %d answered success", stored, want)
		}
		t.Logf("%d of %d refused", refused, len(answered))
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// TestTransfer_AnotherTenantsAccountIsNeitherLockedNorTouched: a transfer
// that names another tenant's account id fails with ENOTFOUND without
// waiting for, locking or changing that account's row.
func TestTransfer_AnotherTenantsAccountIsNeitherLockedNorTouched(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		mine := MustAccount(t, l.db, l.tenant, "USD", true)
		other := MustTenant(t, l.db)
		theirs := MustAccount(t, l.db, other, "USD", true)
		before := l.accountRow(t, theirs.ID)
		release := blockRow(t, l.db, theirs.ID) // a transaction of the other tenant holds its row
		defer release()
		for _, in := range []holdfast.TransferCreate{
			{DebitAccountID: mine.ID, CreditAccountID: theirs.ID, Amount: 3, Currency: "USD"},
			{DebitAccountID: theirs.ID, CreditAccountID: mine.ID, Amount: 3, Currency: "USD"},
		} {
			done := make(chan error, 1)
			go func() {
				_, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{in}})
				done <- err
			}()
			var err error
			waitFor(t, func() bool {
				select {
				case err = <-done:
					return true
				default:
				}
				if lockWaiters(t, l.db) > 0 {
					release()
					t.Fatal("the transfer waits for the row lock of another tenant's account")
				}
				return false
			})
			if !holdfast.IsCode(err, holdfast.ENOTFOUND) {
				t.Fatalf("err = %v, want %s", err, holdfast.ENOTFOUND)
			}
		}
		release()
		if after := l.accountRow(t, theirs.ID); after != before {
			t.Fatalf("the other tenant's account changed: %s, was %s", after, before)
		}
		var n int
		l.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM entries WHERE account_id IN ($1, $2)", mine.ID, theirs.ID).Scan(&n)
		if n != 0 {
			t.Fatalf("%d entries written", n)
		}
	})
}

// accountRow returns the account's row as text, xmin included, so that
// any write to it (even of the same values) shows.
func (l *ledger) accountRow(t *testing.T, id string) string {
	t.Helper()
	var row string
	if err := l.db.Pool.QueryRow(context.Background(), "SELECT xmin::text || ' ' || a::text FROM accounts a WHERE id = $1", id).Scan(&row); err != nil {
		t.Fatal(err)
	}
	return row
}

// holdCommits makes every commit that inserts a transfer wait until
// release: a deferred trigger waits for a shared advisory lock that the
// test holds, and swallows the cancellation a client sends when it gives
// up, so such a commit goes on after its client has gone. wait returns once
// no transaction waits in the trigger any more (it committed or ended).
func holdCommits(t *testing.T, db *postgres.DB) (release, wait func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `
		CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			LOOP
				BEGIN
					PERFORM pg_advisory_xact_lock_shared(4242);
					RETURN NULL;
				EXCEPTION WHEN query_canceled THEN
					-- the client gave up; the commit goes on
				END;
			END LOOP;
		END $$;
		CREATE CONSTRAINT TRIGGER test_hold_commit AFTER INSERT ON transfers
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_hold_commit()`); err != nil {
		t.Fatal(err)
	}
	holder, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(holder.Release)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	release = func() {
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(4242)"); err != nil {
			t.Fatal(err)
		}
	}
	wait = func() {
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(4242)"); err != nil {
			t.Fatal(err)
		}
	}
	return release, wait
}

// TestTransfer_CommitCutOffIsAnsweredWithItsOutcome: a transfer whose
// COMMIT was sent, and whose connection was then cut off by a deadline
// (the caller's outside group commit, the batch's inside it) while the
// server went on committing, is answered with what happened to it: success
// if it committed, a refusal only if it did not.
func TestTransfer_CommitCutOffIsAnsweredWithItsOutcome(t *testing.T) {
	t.Parallel()
	for _, gc := range []bool{false, true} {
		t.Run(fmt.Sprintf("group_commit=%v", gc), func(t *testing.T) {
			t.Parallel()
			db := MustOpenDB(t)
			l := &ledger{db: db, tenant: MustTenant(t, db), accounts: postgres.NewAccountService(db),
				transfers: MustTransfers(t, db, postgres.TransferConfig{GroupCommit: gc, Writer: postgres.WriterConfig{BatchTimeout: 200 * time.Millisecond}})}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if gc {
				ctx = context.Background() // a batch, once taken, is the writer's: its own timeout cuts it off
			}
			house := MustAccount(t, db, l.tenant, "USD", true)
			alice := MustAccount(t, db, l.tenant, "USD", false)
			release, wait := holdCommits(t, db)
			id := uuid.NewString()
			done := make(chan error, 1)
			go func() {
				_, _, err := l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
					ID: id, DebitAccountID: house.ID, CreditAccountID: alice.ID, Amount: 5, Currency: "USD"}}})
				done <- err
			}()
			var err error
			var answered bool
			select {
			case err = <-done:
				answered = true
			case <-ctx.Done():
			}
			release()
			if !answered {
				err = <-done
			}
			wait()
			exists := transferExists(t, db, l.tenant, id)
			switch {
			case err == nil && !exists:
				t.Fatal("the call succeeded but the transfer does not exist")
			case err != nil && exists:
				t.Fatalf("the call failed (%v) but the transfer exists", err)
			case holdfast.IsCode(err, holdfast.EOUTCOMEUNKNOWN):
				t.Fatalf("the database is up, yet the outcome is unknown: %v", err)
			}
			t.Logf("err = %v, exists = %v", err, exists)
			AssertLedgerConsistent(t, db, l.tenant)
		})
	}
}
