package holdfast_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// The tenants and accounts of the posting tests.
const (
	tenantA = "0190a0b0-0000-7000-8000-00000000000a"
	tenantB = "0190a0b0-0000-7000-8000-00000000000b"
	house   = "0190a0b0-0000-7000-8000-000000000001" // USD, may overdraw
	alice   = "0190a0b0-0000-7000-8000-000000000002" // USD
	bob     = "0190a0b0-0000-7000-8000-000000000003" // USD
	euro    = "0190a0b0-0000-7000-8000-000000000004" // EUR
	foreign = "0190a0b0-0000-7000-8000-000000000005" // USD, tenant B's
	nowhere = "0190a0b0-0000-7000-8000-000000000006" // no such account
)

var postedAt = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// newBook returns a book of tenant A's accounts (and one of tenant B's)
// with the given balances, whose generated ids count up from gen-1.
func newBook(balances map[string]int64) *holdfast.Book {
	accounts := map[string]*holdfast.AccountState{
		house:   {TenantID: tenantA, Currency: "USD", AllowOverdraft: true},
		alice:   {TenantID: tenantA, Currency: "USD"},
		bob:     {TenantID: tenantA, Currency: "USD"},
		euro:    {TenantID: tenantA, Currency: "EUR"},
		foreign: {TenantID: tenantB, Currency: "USD"},
	}
	for id, b := range balances {
		accounts[id].Balance = b
	}
	n := 0
	return &holdfast.Book{
		Accounts:  accounts,
		Transfers: map[holdfast.TransferKey]*holdfast.Transfer{},
		Now:       postedAt,
		NewID:     func() string { n++; return fmt.Sprintf("gen-%d", n) },
	}
}

func move(from, to string, amount int64) holdfast.TransferCreate {
	return holdfast.TransferCreate{DebitAccountID: from, CreditAccountID: to, Amount: amount, Currency: "USD"}
}

// balances returns the book's balances of the given accounts.
func balances(b *holdfast.Book, ids ...string) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = b.Accounts[id].Balance
	}
	return out
}

func TestPost_MovesMoneyAndWritesTwoEntries(t *testing.T) {
	t.Parallel()
	b := newBook(nil)
	in := move(house, alice, 250)
	in.Description = "top-up"
	p, err := b.Post(tenantA, []holdfast.TransferCreate{in}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := &holdfast.Transfer{ID: "gen-1", TenantID: tenantA, DebitAccountID: house, CreditAccountID: alice,
		Amount: 250, Currency: "USD", CurrencyExponent: 2, Description: "top-up", Status: holdfast.StatusPosted,
		CreatedAt: postedAt}
	if len(p.Transfers) != 1 || !reflect.DeepEqual(p.Transfers[0], want) {
		t.Fatalf("transfers = %+v, want [%+v]", p.Transfers, want)
	}
	if len(p.Created) != 1 || p.Created[0] != p.Transfers[0] {
		t.Fatalf("created = %+v, want the one transfer", p.Created)
	}
	wantEntries := []holdfast.Entry{
		{AccountID: house, TransferID: "gen-1", Amount: -250, BalanceAfter: -250, CreatedAt: postedAt},
		{AccountID: alice, TransferID: "gen-1", Amount: 250, BalanceAfter: 250, CreatedAt: postedAt},
	}
	if fmt.Sprint(p.Entries) != fmt.Sprint(wantEntries) {
		t.Fatalf("entries = %+v, want %+v", p.Entries, wantEntries)
	}
	if got := balances(b, house, alice); got[0] != -250 || got[1] != 250 {
		t.Fatalf("balances = %v, want [-250 250]", got)
	}
	if !b.Accounts[house].Changed || !b.Accounts[alice].Changed || b.Accounts[bob].Changed {
		t.Fatal("only the accounts the transfer touched are marked changed")
	}
}

// Each rule that refuses a lone transfer, at its edge: the refusal carries
// the rule's code and leaves every balance as it was; the case beside it,
// one unit away, is applied.
func TestPost_RulesRefuseALoneTransfer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		balances map[string]int64
		in       holdfast.TransferCreate
		code     string // "" when the transfer is applied
	}{
		{"unknown debit account", nil, move(nowhere, alice, 1), holdfast.ENOTFOUND},
		{"unknown credit account", nil, move(house, nowhere, 1), holdfast.ENOTFOUND},
		{"another tenant's debit account", map[string]int64{foreign: 10}, move(foreign, alice, 1), holdfast.ENOTFOUND},
		{"another tenant's credit account", nil, move(house, foreign, 1), holdfast.ENOTFOUND},
		{"debit account of another currency", map[string]int64{euro: 10}, move(euro, alice, 1), holdfast.ECURRENCY},
		{"credit account of another currency", nil, move(house, euro, 1), holdfast.ECURRENCY},
		{"funds one short", map[string]int64{alice: 99}, move(alice, bob, 100), holdfast.EINSUFFICIENT},
		{"funds exactly enough", map[string]int64{alice: 100}, move(alice, bob, 100), ""},
		{"overdraft allowed below zero", nil, move(house, alice, holdfast.MaxAmount), ""},
		{"credit one past the int64 maximum", map[string]int64{alice: math.MaxInt64 - 9}, move(house, alice, 10), holdfast.ELIMIT},
		{"credit up to the int64 maximum", map[string]int64{alice: math.MaxInt64 - 10}, move(house, alice, 10), ""},
		{"debit one past the int64 minimum", map[string]int64{house: math.MinInt64 + 9}, move(house, alice, 10), holdfast.ELIMIT},
		{"debit down to the int64 minimum", map[string]int64{house: math.MinInt64 + 10}, move(house, alice, 10), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(tc.balances)
			ids := []string{house, alice, bob, euro, foreign}
			before := balances(b, ids...)
			p, err := b.Post(tenantA, []holdfast.TransferCreate{tc.in}, false)
			if tc.code == "" {
				if err != nil || len(p.Created) != 1 {
					t.Fatalf("err = %v, created %d; want the transfer applied", err, len(p.Created))
				}
				return
			}
			if !holdfast.IsCode(err, tc.code) {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			var e *holdfast.Error
			if errors.As(err, &e) && e.Extensions != nil {
				t.Fatalf("a lone transfer's error names an index: %v", e.Extensions)
			}
			if len(p.Transfers)+len(p.Created)+len(p.Entries) != 0 {
				t.Fatalf("a refused transfer returned %+v", p)
			}
			if got := balances(b, ids...); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("balances %v after a refusal, want %v", got, before)
			}
			for _, id := range ids {
				if b.Accounts[id].Changed {
					t.Fatalf("account %s marked changed by a refusal", id)
				}
			}
		})
	}
}

// A linked set is all or nothing: a failing member undoes the members
// before it (balances, changed marks, the ids they claimed) and the error
// carries its code and index.
func TestPost_LinkedSetFailsWholeNamingTheMember(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		set   []holdfast.TransferCreate
		index int
		code  string
	}{
		{"second member overdraws", []holdfast.TransferCreate{move(house, alice, 5), move(alice, bob, 6)}, 1, holdfast.EINSUFFICIENT},
		{"third member's currency", []holdfast.TransferCreate{move(house, alice, 5), move(alice, bob, 5), move(house, euro, 1)}, 2, holdfast.ECURRENCY},
		{"first member's account", []holdfast.TransferCreate{move(nowhere, alice, 5), move(house, alice, 1)}, 0, holdfast.ENOTFOUND},
		{"a member's overflow", []holdfast.TransferCreate{move(house, alice, 5), move(house, alice, math.MaxInt64-4)}, 1, holdfast.ELIMIT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(nil)
			for i := range tc.set {
				tc.set[i].ID = fmt.Sprintf("0190a0b0-0000-7000-8000-0000000001%02d", i)
			}
			before := balances(b, house, alice, bob, euro)
			p, err := b.Post(tenantA, tc.set, true)
			if !holdfast.IsCode(err, tc.code) {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			var e *holdfast.Error
			if !errors.As(err, &e) || e.Extensions["index"] != tc.index {
				t.Fatalf("error %v names member %v, want %d", err, e.Extensions, tc.index)
			}
			if len(p.Transfers)+len(p.Created)+len(p.Entries) != 0 {
				t.Fatalf("a failed set returned %+v", p)
			}
			if got := balances(b, house, alice, bob, euro); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("balances %v after the set failed, want %v", got, before)
			}
			for id, a := range b.Accounts {
				if a.Changed {
					t.Fatalf("account %s marked changed by a failed set", id)
				}
			}
			if len(b.Transfers) != 0 {
				t.Fatalf("a failed set left its ids claimed: %v", b.Transfers)
			}
		})
	}
}

// A repeated client id follows TigerBeetle's rule: the same fields return
// the existing transfer and move nothing; other fields fail with
// ETRANSFEREXISTS. A repeat later in the batch, or later in one linked
// set, sees the earlier one.
func TestPost_RepeatedIDReturnsTheExistingTransfer(t *testing.T) {
	t.Parallel()
	const id = "0190a0b0-0000-7000-8000-0000000000ff"
	stored := &holdfast.Transfer{ID: id, TenantID: tenantA, DebitAccountID: house, CreditAccountID: alice, Amount: 7, Currency: "USD",
		CreatedAt: postedAt.Add(-time.Hour)}
	withID := func(c holdfast.TransferCreate) holdfast.TransferCreate { c.ID = id; return c }

	t.Run("stored before the batch", func(t *testing.T) {
		t.Parallel()
		b := newBook(nil)
		b.Transfers[holdfast.TransferKey{TenantID: tenantA, ID: id}] = stored
		p, err := b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, alice, 7))}, false)
		if err != nil || len(p.Transfers) != 1 || p.Transfers[0] != stored || len(p.Created)+len(p.Entries) != 0 {
			t.Fatalf("same fields: %+v, %v; want the stored transfer and nothing new", p, err)
		}
		if got := balances(b, house, alice); got[0] != 0 || got[1] != 0 {
			t.Fatalf("a repeat moved money: %v", got)
		}
		_, err = b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, alice, 8))}, false)
		if !holdfast.IsCode(err, holdfast.ETRANSFEREXISTS) {
			t.Fatalf("other fields: err = %v, want %s", err, holdfast.ETRANSFEREXISTS)
		}
		// Another tenant's ids are its own.
		b.Accounts[bob].TenantID, b.Accounts[foreign].Balance = tenantB, 10
		p, err = b.Post(tenantB, []holdfast.TransferCreate{withID(move(foreign, bob, 7))}, false)
		if err != nil || len(p.Created) != 1 || p.Created[0] == stored {
			t.Fatalf("the id in another tenant: %+v, %v; want a new transfer", p, err)
		}
	})
	t.Run("earlier in the batch", func(t *testing.T) {
		t.Parallel()
		b := newBook(nil)
		first, err := b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, alice, 7))}, false)
		if err != nil || len(first.Created) != 1 || first.Created[0].ID != id {
			t.Fatalf("first: %+v, %v", first, err)
		}
		again, err := b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, alice, 7))}, false)
		if err != nil || len(again.Transfers) != 1 || again.Transfers[0] != first.Created[0] || len(again.Created) != 0 {
			t.Fatalf("repeat in the batch: %+v, %v; want the first request's transfer", again, err)
		}
		if _, err := b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, bob, 7))}, false); !holdfast.IsCode(err, holdfast.ETRANSFEREXISTS) {
			t.Fatalf("other fields in the batch: err = %v", err)
		}
		if got := balances(b, house, alice, bob); got[0] != -7 || got[1] != 7 || got[2] != 0 {
			t.Fatalf("balances %v, want [-7 7 0]: applied once", got)
		}
	})
	t.Run("earlier in a linked set", func(t *testing.T) {
		t.Parallel()
		b := newBook(nil)
		p, err := b.Post(tenantA, []holdfast.TransferCreate{withID(move(house, alice, 7)), withID(move(house, alice, 7))}, true)
		if err != nil || len(p.Transfers) != 2 || p.Transfers[0] != p.Transfers[1] || len(p.Created) != 1 || len(p.Entries) != 2 {
			t.Fatalf("a set repeating its own id: %+v, %v; want one transfer, returned twice", p, err)
		}
		_, err = b.Post(tenantA, []holdfast.TransferCreate{
			withID(move(house, bob, 1)), // exists with other fields: refused at once
		}, true)
		var e *holdfast.Error
		if !holdfast.IsCode(err, holdfast.ETRANSFEREXISTS) || !errors.As(err, &e) || e.Extensions["index"] != 0 {
			t.Fatalf("err = %v, want %s at index 0", err, holdfast.ETRANSFEREXISTS)
		}
	})
}

// Transfers without a client id get the book's generated ids, in order.
func TestPost_GeneratesIDsForTransfersWithoutOne(t *testing.T) {
	t.Parallel()
	b := newBook(nil)
	p, err := b.Post(tenantA, []holdfast.TransferCreate{move(house, alice, 1), move(house, bob, 1)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Created[0].ID != "gen-1" || p.Created[1].ID != "gen-2" {
		t.Fatalf("ids %s, %s; want gen-1, gen-2", p.Created[0].ID, p.Created[1].ID)
	}
	if len(b.Transfers) != 0 {
		t.Fatalf("generated ids were recorded as client ids: %v", b.Transfers)
	}
}
