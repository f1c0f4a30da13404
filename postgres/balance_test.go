package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// The balance at a moment is the running balance of the last entry at or
// before it, pending totals included; the history is that at each point.
func TestBalance_AtAMomentAndHistory(t *testing.T) {
	t.Parallel()
	l, c := holdLedger(t, true)
	balances := postgres.NewBalanceService(l.db)
	ctx := context.Background()
	start := c.now().UTC().Truncate(time.Hour).Add(time.Hour) // a clean hour ahead
	c.advance(start.Sub(c.now()) + time.Minute)               // 00:01
	house, alice, shop := l.funded(t)                         // alice 100
	c.advance(time.Hour)                                      // 01:01
	h, err := l.hold(alice, shop, 30, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.advance(time.Hour) // 02:01
	if _, err := l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{Amount: 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.transfer(house, alice, 5); err != nil {
		t.Fatal(err)
	}

	type fig struct{ posted, pd, pc, avail int64 }
	want := []fig{{0, 0, 0, 0}, {100, 0, 0, 100}, {100, 30, 0, 70}, {85, 0, 0, 85}}
	for i, w := range want {
		at := start.Add(time.Duration(i) * time.Hour)
		b, err := balances.BalanceAt(ctx, l.tenant, alice.ID, at)
		if err != nil {
			t.Fatal(err)
		}
		if got := (fig{b.Posted, b.PendingDebits, b.PendingCredits, b.Available}); got != w || !b.At.Equal(at) || b.CurrencyExponent != 2 {
			t.Errorf("alice at %v: %+v, want %+v", at, b, w)
		}
	}
	shopAt, err := balances.BalanceAt(ctx, l.tenant, shop.ID, start.Add(90*time.Minute))
	if err != nil || shopAt.PendingCredits != 30 || shopAt.Posted != 0 {
		t.Fatalf("shop while held: %+v, %v", shopAt, err)
	}

	var got []fig
	err = balances.BalanceHistory(ctx, l.tenant, alice.ID, holdfast.BalanceHistory{From: start, To: start.Add(3 * time.Hour), Interval: time.Hour},
		func(b *holdfast.Balance) error {
			got = append(got, fig{b.Posted, b.PendingDebits, b.PendingCredits, b.Available})
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("history = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("history = %v, want %v", got, want)
		}
	}

	// Another tenant's account, or none, is not found; a range too long is refused.
	other := MustTenant(t, l.db)
	if _, err := balances.BalanceAt(ctx, other, alice.ID, start); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("another tenant's balance: %v", err)
	}
	err = balances.BalanceHistory(ctx, other, alice.ID, holdfast.BalanceHistory{From: start, To: start, Interval: time.Hour}, func(*holdfast.Balance) error { return nil })
	if !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("another tenant's history: %v", err)
	}
	err = balances.BalanceHistory(ctx, l.tenant, alice.ID, holdfast.BalanceHistory{From: start, To: start.Add(20 * 365 * 24 * time.Hour), Interval: time.Hour},
		func(*holdfast.Balance) error { return nil })
	if !holdfast.IsCode(err, holdfast.EINVALID) {
		t.Fatalf("twenty years by the hour: %v", err)
	}
}
