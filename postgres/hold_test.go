package postgres_test

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// clock is a fake clock for the database's timestamps: holds expire when
// a test moves it, not when the machine's time passes.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// holdLedger is a ledger on a database whose clock the test moves.
func holdLedger(t *testing.T, groupCommit bool) (*ledger, *clock) {
	t.Helper()
	db := MustOpenDB(t)
	c := &clock{}
	db.Now = c.now
	return &ledger{db: db, tenant: MustTenant(t, db), accounts: postgres.NewAccountService(db),
		transfers: MustTransfers(t, db, postgres.TransferConfig{GroupCommit: groupCommit, Writer: postgres.WriterConfig{MaxBatch: 64}})}, c
}

// bothModesHolds is bothModes for tests that move the clock.
func bothModesHolds(t *testing.T, f func(t *testing.T, l *ledger, c *clock)) {
	for _, gc := range []bool{false, true} {
		name := "group_commit=false"
		if gc {
			name = "group_commit=true"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l, c := holdLedger(t, gc)
			f(t, l, c)
		})
	}
}

func (l *ledger) hold(from, to *holdfast.Account, amount, timeout int64) (*holdfast.Transfer, error) {
	out, _, err := l.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: l.tenant, Transfers: []holdfast.TransferCreate{{
		DebitAccountID: from.ID, CreditAccountID: to.ID, Amount: amount, Currency: from.Currency, Pending: true, Timeout: timeout}}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (l *ledger) resolve(hold *holdfast.Transfer, action string, in holdfast.TransferResolve) (*holdfast.Transfer, error) {
	t, _, err := l.transfers.ResolveTransfer(context.Background(), holdfast.ResolveRequest{
		TenantID: l.tenant, PendingID: hold.ID, Action: action, In: in})
	return t, err
}

func (l *ledger) account(t *testing.T, a *holdfast.Account) *holdfast.Account {
	t.Helper()
	got, err := l.accounts.FindAccount(context.Background(), l.tenant, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// wantFigures fails t unless the account shows these posted, pending and
// available figures.
func (l *ledger) wantFigures(t *testing.T, a *holdfast.Account, posted, pendingDebits, pendingCredits, available int64) {
	t.Helper()
	got := l.account(t, a)
	if got.Posted != posted || got.Balance != posted || got.PendingDebits != pendingDebits || got.PendingCredits != pendingCredits || got.Available != available {
		t.Fatalf("account: posted %d, pending debits %d, pending credits %d, available %d; want %d, %d, %d, %d",
			got.Posted, got.PendingDebits, got.PendingCredits, got.Available, posted, pendingDebits, pendingCredits, available)
	}
}

// funded returns a house account and a customer holding 100.
func (l *ledger) funded(t *testing.T) (house, alice, shop *holdfast.Account) {
	t.Helper()
	house = MustAccount(t, l.db, l.tenant, "USD", true)
	alice = MustAccount(t, l.db, l.tenant, "USD", false)
	shop = MustAccount(t, l.db, l.tenant, "USD", false)
	if _, err := l.transfer(house, alice, 100); err != nil {
		t.Fatal(err)
	}
	return house, alice, shop
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if !holdfast.IsCode(err, code) {
		t.Fatalf("%s: err = %v, want %s", what, err, code)
	}
}

func TestHold_ReservesThenPostsPartOfIt(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		_, alice, shop := l.funded(t)
		h, err := l.hold(alice, shop, 60, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !h.Pending || h.Status != holdfast.StatusPending || h.ExpiresAt != nil {
			t.Fatalf("hold = %+v", h)
		}
		l.wantFigures(t, alice, 100, 60, 0, 40)
		l.wantFigures(t, shop, 0, 0, 60, 0)
		// Held money cannot be spent twice.
		_, err = l.transfer(alice, shop, 41)
		wantCode(t, "a transfer past what is available", err, holdfast.EINSUFFICIENT)
		_, err = l.hold(alice, shop, 41, 0)
		wantCode(t, "a hold past what is available", err, holdfast.EINSUFFICIENT)

		p, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{Amount: 45})
		if err != nil {
			t.Fatal(err)
		}
		if p.PendingID != h.ID || p.Status != holdfast.StatusPosted || p.Amount != 45 || p.Pending {
			t.Fatalf("post = %+v", p)
		}
		l.wantFigures(t, alice, 55, 0, 0, 55) // the other 15 released
		l.wantFigures(t, shop, 45, 0, 0, 45)
		got, err := l.transfers.FindTransfer(context.Background(), l.tenant, h.ID)
		if err != nil || got.Status != holdfast.StatusPosted {
			t.Fatalf("hold after its post: %+v, %v", got, err)
		}
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

func TestHold_ResolvesAtMostOnce(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		_, alice, shop := l.funded(t)
		posted, _ := l.hold(alice, shop, 10, 0)
		if _, err := l.resolve(posted, holdfast.StatusPosted, holdfast.TransferResolve{}); err != nil {
			t.Fatal(err)
		}
		_, err := l.resolve(posted, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post twice", err, holdfast.EALREADYPOSTED)
		_, err = l.resolve(posted, holdfast.StatusVoided, holdfast.TransferResolve{})
		wantCode(t, "void after post", err, holdfast.EALREADYPOSTED)

		voided, _ := l.hold(alice, shop, 20, 0)
		v, err := l.resolve(voided, holdfast.StatusVoided, holdfast.TransferResolve{})
		if err != nil || v.Amount != 20 || v.Status != holdfast.StatusVoided {
			t.Fatalf("void = %+v, %v", v, err)
		}
		_, err = l.resolve(voided, holdfast.StatusVoided, holdfast.TransferResolve{})
		wantCode(t, "void twice", err, holdfast.EALREADYVOIDED)
		_, err = l.resolve(voided, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post after void", err, holdfast.EALREADYVOIDED)

		l.wantFigures(t, alice, 90, 0, 0, 90) // posted once, voided once
		l.wantFigures(t, shop, 10, 0, 0, 10)
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

func TestHold_Refusals(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		house, alice, shop := l.funded(t)
		h, _ := l.hold(alice, shop, 30, 0)
		_, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{Amount: 31})
		wantCode(t, "post more than held", err, holdfast.EEXCEEDSPENDING)
		_, err = l.resolve(h, holdfast.StatusVoided, holdfast.TransferResolve{Amount: 5})
		wantCode(t, "void with an amount", err, holdfast.EINVALID)
		plain, _ := l.transfer(house, shop, 5)
		_, err = l.resolve(plain, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post of a posted transfer", err, holdfast.ENOTPENDING)
		_, err = l.resolve(&holdfast.Transfer{ID: uuid.NewString()}, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post of nothing", err, holdfast.ENOTFOUND)
		// Another tenant's hold is not found.
		other := MustTenant(t, l.db)
		_, _, err = l.transfers.ResolveTransfer(context.Background(), holdfast.ResolveRequest{TenantID: other, PendingID: h.ID, Action: holdfast.StatusPosted})
		wantCode(t, "post of another tenant's hold", err, holdfast.ENOTFOUND)

		// A refused hold leaves nothing held.
		_, err = l.hold(alice, shop, 71, 0)
		wantCode(t, "a hold past what is available", err, holdfast.EINSUFFICIENT)
		l.wantFigures(t, alice, 100, 30, 0, 70)
		l.wantFigures(t, shop, 5, 0, 30, 5)
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// Posting after the debit account's balance changed still respects its
// limits: the hold reserved the money, so what was spent meanwhile came out
// of what was left, and the post cannot overdraw.
func TestHold_PostAfterTheBalanceChangedKeepsTheLimits(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		house, _, shop := l.funded(t)
		carol, err := l.accounts.CreateAccount(context.Background(), l.tenant, holdfast.AccountCreate{Currency: "USD", OverdraftLimit: 20}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.transfer(house, carol, 50); err != nil {
			t.Fatal(err)
		}
		h, err := l.hold(carol, shop, 60, 0) // 50 + 20 of overdraft covers it
		if err != nil {
			t.Fatal(err)
		}
		l.wantFigures(t, carol, 50, 60, 0, -10)
		if _, err := l.transfer(carol, shop, 10); err != nil { // down to the limit
			t.Fatal(err)
		}
		_, err = l.transfer(carol, shop, 1)
		wantCode(t, "past the overdraft limit", err, holdfast.EINSUFFICIENT)
		if _, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{}); err != nil {
			t.Fatal(err)
		}
		l.wantFigures(t, carol, -20, 0, 0, -20)
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

func TestHold_MaxBalance(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		house, _, _ := l.funded(t)
		limit := int64(100)
		wallet, err := l.accounts.CreateAccount(context.Background(), l.tenant, holdfast.AccountCreate{Currency: "USD", MaxBalance: &limit}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.transfer(house, wallet, 70); err != nil {
			t.Fatal(err)
		}
		if _, err := l.hold(house, wallet, 30, 0); err != nil { // up to the max with what is on its way
			t.Fatal(err)
		}
		_, err = l.transfer(house, wallet, 1)
		wantCode(t, "past max_balance", err, holdfast.EMAXBALANCE)
		_, err = l.hold(house, wallet, 1, 0)
		wantCode(t, "a hold past max_balance", err, holdfast.EMAXBALANCE)
		l.wantFigures(t, wallet, 70, 0, 30, 70)
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

func TestHold_ExpiresAndCannotBePostedOnceDue(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, c *clock) {
		_, alice, shop := l.funded(t)
		h, err := l.hold(alice, shop, 25, 60)
		if err != nil {
			t.Fatal(err)
		}
		if h.ExpiresAt == nil || !h.ExpiresAt.Equal(h.CreatedAt.Add(time.Minute)) {
			t.Fatalf("expires_at = %v, want a minute after %v", h.ExpiresAt, h.CreatedAt)
		}
		n, err := l.transfers.ExpireDue(context.Background(), 100)
		if err != nil || n != 0 {
			t.Fatalf("ExpireDue before the timeout = %d, %v; want 0", n, err)
		}
		c.advance(time.Minute)
		// Due and not yet swept: it can be neither posted nor voided.
		_, err = l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post of a hold past its timeout", err, holdfast.EEXPIRED)
		_, err = l.resolve(h, holdfast.StatusVoided, holdfast.TransferResolve{})
		wantCode(t, "void of a hold past its timeout", err, holdfast.EEXPIRED)
		l.wantFigures(t, alice, 100, 25, 0, 75)

		if n, err := l.transfers.ExpireDue(context.Background(), 100); err != nil || n != 1 {
			t.Fatalf("ExpireDue = %d, %v; want 1", n, err)
		}
		l.wantFigures(t, alice, 100, 0, 0, 100)
		l.wantFigures(t, shop, 0, 0, 0, 0)
		got, _ := l.transfers.FindTransfer(context.Background(), l.tenant, h.ID)
		if got.Status != holdfast.StatusExpired {
			t.Fatalf("status = %s, want expired", got.Status)
		}
		_, err = l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post of an expired hold", err, holdfast.EEXPIRED)
		if n, err := l.transfers.ExpireDue(context.Background(), 100); err != nil || n != 0 {
			t.Fatalf("ExpireDue again = %d, %v; want 0", n, err)
		}
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// A client-chosen id makes a post or void idempotent by itself.
func TestHold_ClientIDOnPostAndVoid(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		_, alice, shop := l.funded(t)
		h, _ := l.hold(alice, shop, 40, 0)
		id := uuid.NewString()
		first, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{ID: id})
		if err != nil || first.ID != id || first.Amount != 40 {
			t.Fatalf("post = %+v, %v", first, err)
		}
		again, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{ID: id})
		if err != nil || !reflect.DeepEqual(again, first) {
			t.Fatalf("the same post again: %+v, %v; want %+v", again, err, first)
		}
		_, err = l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{ID: id, Amount: 39})
		wantCode(t, "the id with another amount", err, holdfast.ETRANSFEREXISTS)
		_, err = l.resolve(h, holdfast.StatusVoided, holdfast.TransferResolve{ID: id})
		wantCode(t, "the id for a void", err, holdfast.ETRANSFEREXISTS)

		v, _ := l.hold(alice, shop, 5, 0)
		vid := uuid.NewString()
		if _, err := l.resolve(v, holdfast.StatusVoided, holdfast.TransferResolve{ID: vid}); err != nil {
			t.Fatal(err)
		}
		if again, err := l.resolve(v, holdfast.StatusVoided, holdfast.TransferResolve{ID: vid}); err != nil || again.ID != vid {
			t.Fatalf("the same void again: %+v, %v", again, err)
		}
		l.wantFigures(t, alice, 60, 0, 0, 60)
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// Many posts and voids of one hold at once, through two services on the
// database (two replicas): exactly one applies.
func TestHold_RacingResolutionsApplyOnce(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		other := MustTransfers(t, l.db, postgres.TransferConfig{GroupCommit: true, Writer: postgres.WriterConfig{MaxBatch: 64}})
		_, alice, shop := l.funded(t)
		for round := range 5 {
			h, err := l.hold(alice, shop, 2, 0)
			if err != nil {
				t.Fatal(err)
			}
			var wins atomic.Int32
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Go(func() {
					svc, action := l.transfers, holdfast.StatusPosted
					if i%2 == 1 {
						svc = other
					}
					if i%4 >= 2 {
						action = holdfast.StatusVoided
					}
					_, _, err := svc.ResolveTransfer(context.Background(), holdfast.ResolveRequest{TenantID: l.tenant, PendingID: h.ID, Action: action})
					switch {
					case err == nil:
						wins.Add(1)
					case holdfast.IsCode(err, holdfast.EALREADYPOSTED), holdfast.IsCode(err, holdfast.EALREADYVOIDED):
					default:
						t.Errorf("round %d: %v", round, err)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("round %d: %d resolutions applied, want 1", round, wins.Load())
			}
		}
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}

// Two sweepers (two replicas) expire each hold once.
func TestHold_SweepersInTwoReplicasExpireOnce(t *testing.T) {
	t.Parallel()
	l, c := holdLedger(t, true)
	other := MustTransfers(t, l.db, postgres.TransferConfig{GroupCommit: true})
	house := MustAccount(t, l.db, l.tenant, "USD", true)
	shop := MustAccount(t, l.db, l.tenant, "USD", false)
	const holds = 40
	for range holds {
		if _, err := l.hold(house, shop, 3, 1); err != nil {
			t.Fatal(err)
		}
	}
	c.advance(time.Second)
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, svc := range []*postgres.TransferService{l.transfers, other, l.transfers, other} {
		wg.Go(func() {
			n, err := svc.ExpireDue(context.Background(), 10)
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(n))
			for n > 0 {
				n, _ = svc.ExpireDue(context.Background(), 10)
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if total.Load() != holds {
		t.Fatalf("expired %d, want %d", total.Load(), holds)
	}
	l.wantFigures(t, shop, 0, 0, 0, 0)
	var events int
	l.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM transfers WHERE tenant_id = $1 AND status = 'expired' AND NOT pending`, l.tenant).Scan(&events)
	if events != holds {
		t.Fatalf("%d expiries stored, want %d", events, holds)
	}
	AssertLedgerConsistent(t, l.db, l.tenant)
}

// Each step of a hold's life is an event in the outbox, in the transaction
// that made it.
func TestHold_EventsThroughTheOutbox(t *testing.T) {
	t.Parallel()
	l, c := holdLedger(t, true)
	_, alice, shop := l.funded(t)
	posted, _ := l.hold(alice, shop, 1, 0)
	voided, _ := l.hold(alice, shop, 1, 0)
	if _, err := l.hold(alice, shop, 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.resolve(posted, holdfast.StatusPosted, holdfast.TransferResolve{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.resolve(voided, holdfast.StatusVoided, holdfast.TransferResolve{}); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Second)
	if n, err := l.transfers.ExpireDue(context.Background(), 10); n != 1 || err != nil {
		t.Fatalf("ExpireDue = %d, %v", n, err)
	}
	rows, err := l.db.Pool.Query(context.Background(), `SELECT type, sum(coalesce(cardinality(event_ids), 1))::int FROM outbox
		WHERE tenant_id = $1 AND type LIKE 'transfer.%' GROUP BY type`, l.tenant)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		got[typ] = n
	}
	want := map[string]int{holdfast.EventTransferPosted: 2, holdfast.EventTransferPending: 3, holdfast.EventTransferVoided: 1, holdfast.EventTransferExpired: 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %v, want %v (the funding transfer and the post are transfer.posted)", got, want)
	}
}
