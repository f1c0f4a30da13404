package holdfast

import (
	"fmt"
	"math"
	"time"
)

// AccountState is an account as the posting rules see it while a batch of
// requests is applied to it.
type AccountState struct {
	TenantID       string
	Currency       string
	AllowOverdraft bool
	Balance        int64
	Changed        bool // a posting in this batch changed Balance
}

// Entry is one side of a transfer on one account: Amount is added to the
// balance (negative for the debit), which is then BalanceAfter.
type Entry struct {
	AccountID    string
	TransferID   string
	Amount       int64
	BalanceAfter int64
	CreatedAt    time.Time
}

// TransferKey names a transfer: ids are unique per tenant.
type TransferKey struct{ TenantID, ID string }

// Book is what a batch of transfer requests is applied to, in memory: the
// accounts the requests name and the transfers that already exist under the
// client-supplied ids they carry. A store loads it (under the accounts' row
// locks), Post applies each request in turn, and the store writes the new
// transfers, their entries and the changed balances. Not safe for
// concurrent use.
type Book struct {
	// Accounts holds the accounts by id; an id absent here, or one of
	// another tenant, is not found.
	Accounts map[string]*AccountState
	// Transfers holds the transfers that exist under client-supplied ids;
	// Post adds those it creates, so that a later request of the batch sees them.
	Transfers map[TransferKey]*Transfer
	// Now is the creation time of the transfers and entries Post writes.
	Now time.Time
	// NewID returns the id of a transfer whose client gave none.
	NewID func() string
}

// Posting is what Post applied for one request: its transfers in request
// order (the new ones, and the existing one a repeated client id stands
// for), the new ones alone, and their entries, debit then credit.
type Posting struct {
	Transfers []*Transfer
	Created   []*Transfer
	Entries   []Entry
}

// Post applies one request's transfers, validated and with canonical ids,
// to the book. A transfer moves Amount from its debit account to its credit
// account, which must be the tenant's and of the transfer's currency
// (ENOTFOUND, ECURRENCY); the debit may not go below zero unless the
// account allows an overdraft (EINSUFFICIENT), and no balance may leave the
// int64 range (ELIMIT). A client-supplied id that exists already returns
// that transfer when the fields match and moves nothing, and fails with
// ETRANSFEREXISTS when they differ (TigerBeetle's rule).
//
// The request is all or nothing: on failure the book is left as it was
// and the error is the failing transfer's; for a linked request, with the
// same code, a message naming the member and its index in
// Extensions["index"].
func (b *Book) Post(tenantID string, in []TransferCreate, linked bool) (Posting, error) {
	var p Posting
	type saved struct {
		a       *AccountState
		balance int64
		changed bool
	}
	var undo []saved
	var newKeys []TransferKey
	fail := func(i int, err *Error) (Posting, error) {
		for j := len(undo) - 1; j >= 0; j-- {
			undo[j].a.Balance, undo[j].a.Changed = undo[j].balance, undo[j].changed
		}
		for _, k := range newKeys {
			delete(b.Transfers, k)
		}
		if !linked {
			return Posting{}, err
		}
		return Posting{}, &Error{
			Code:       err.Code,
			Message:    fmt.Sprintf("transfers[%d] failed, so none was applied: %s", i, err.Message),
			Extensions: map[string]any{"index": i},
		}
	}
	for i, c := range in {
		if c.ID != "" {
			if t, ok := b.Transfers[TransferKey{tenantID, c.ID}]; ok {
				if !c.Matches(t) {
					return fail(i, Errorf(ETRANSFEREXISTS, "a transfer with id %s already exists with different fields", c.ID))
				}
				p.Transfers = append(p.Transfers, t)
				continue
			}
		}
		debit, credit, err := b.check(tenantID, c)
		if err != nil {
			return fail(i, err)
		}
		undo = append(undo, saved{debit, debit.Balance, debit.Changed}, saved{credit, credit.Balance, credit.Changed})
		debit.Balance -= c.Amount
		credit.Balance += c.Amount
		debit.Changed, credit.Changed = true, true

		t := &Transfer{
			ID: c.ID, TenantID: tenantID, DebitAccountID: c.DebitAccountID, CreditAccountID: c.CreditAccountID,
			Amount: c.Amount, Currency: c.Currency, Description: c.Description, CreatedAt: b.Now,
		}
		if t.ID == "" {
			t.ID = b.NewID()
		} else {
			// A later transfer of the batch with this id sees it as existing.
			k := TransferKey{tenantID, t.ID}
			b.Transfers[k] = t
			newKeys = append(newKeys, k)
		}
		p.Transfers = append(p.Transfers, t)
		p.Created = append(p.Created, t)
		p.Entries = append(p.Entries,
			Entry{c.DebitAccountID, t.ID, -c.Amount, debit.Balance, b.Now},
			Entry{c.CreditAccountID, t.ID, c.Amount, credit.Balance, b.Now})
	}
	return p, nil
}

// check returns the accounts of one transfer, or the rule it breaks.
func (b *Book) check(tenantID string, c TransferCreate) (debit, credit *AccountState, err *Error) {
	debit, credit = b.Accounts[c.DebitAccountID], b.Accounts[c.CreditAccountID]
	switch {
	case debit == nil || debit.TenantID != tenantID:
		return nil, nil, Errorf(ENOTFOUND, "account %s not found", c.DebitAccountID)
	case credit == nil || credit.TenantID != tenantID:
		return nil, nil, Errorf(ENOTFOUND, "account %s not found", c.CreditAccountID)
	case debit.Currency != c.Currency || credit.Currency != c.Currency:
		return nil, nil, Errorf(ECURRENCY,
			"transfer currency %s does not match the accounts (%s debit, %s credit)", c.Currency, debit.Currency, credit.Currency)
	case !debit.AllowOverdraft && debit.Balance < c.Amount:
		return nil, nil, Errorf(EINSUFFICIENT, "account %s has insufficient funds", c.DebitAccountID)
	case debit.Balance < math.MinInt64+c.Amount || credit.Balance > math.MaxInt64-c.Amount:
		return nil, nil, Errorf(ELIMIT, "the transfer would overflow a balance")
	}
	return debit, credit, nil
}
