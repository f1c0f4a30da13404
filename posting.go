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
	OverdraftLimit int64
	MaxBalance     *int64 // nil: none
	Balance        int64  // posted
	PendingDebits  int64
	PendingCredits int64
	Changed        bool // a posting in this batch changed Balance or a pending total
}

// Entry is one side of a transfer on one account: Amount is added to the
// balance (negative for the debit), which is then BalanceAfter, and the
// account's pending totals are then PendingDebitsAfter and
// PendingCreditsAfter. A hold's entries and a void's move nothing posted:
// their Amount is 0.
type Entry struct {
	AccountID           string
	TransferID          string
	Amount              int64
	BalanceAfter        int64
	PendingDebitsAfter  int64
	PendingCreditsAfter int64
	CreatedAt           time.Time
}

func entryOf(accountID, transferID string, amount int64, a *AccountState, now time.Time) Entry {
	return Entry{accountID, transferID, amount, a.Balance, a.PendingDebits, a.PendingCredits, now}
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
// for), the new ones alone, their entries (debit then credit), and the
// holds they resolved, with their new status.
type Posting struct {
	Transfers []*Transfer
	Created   []*Transfer
	Entries   []Entry
	Resolved  []*Transfer
}

// Post applies one request's transfers, validated and with canonical ids,
// to the book. A transfer moves Amount from its debit account to its credit
// account, which must be the tenant's and of the transfer's currency
// (ENOTFOUND, ECURRENCY). The debit's available balance (posted less what
// holds reserve) may not go below zero, or below -OverdraftLimit, unless
// the account allows an unbounded overdraft (EINSUFFICIENT); the credit's
// balance with what holds will bring may not pass its MaxBalance
// (EMAXBALANCE); no figure may leave the int64 range (ELIMIT). A pending
// transfer (a hold) reserves its amount under the same rules and posts
// nothing; a transfer with a PendingID resolves that hold (see resolve). A
// client-supplied id that exists already returns that transfer when the
// fields match and moves nothing, and fails with ETRANSFEREXISTS when they
// differ (TigerBeetle's rule).
//
// The request is all or nothing: on failure the book is left as it was
// and the error is the failing transfer's; for a linked request, with the
// same code, a message naming the member and its index in
// Extensions["index"].
func (b *Book) Post(tenantID string, in []TransferCreate, linked bool) (Posting, error) {
	var p Posting
	u := undo{book: b}
	for i, c := range in {
		if c.ID != "" {
			if t, ok := b.Transfers[TransferKey{tenantID, c.ID}]; ok {
				if !c.Matches(t) {
					return u.fail(i, linked, Errorf(ETRANSFEREXISTS, "a transfer with id %s already exists with different fields", c.ID))
				}
				p.Transfers = append(p.Transfers, t)
				continue
			}
		}
		var hold *Transfer
		if c.PendingID != "" {
			var err *Error
			if hold, c, err = b.resolvable(tenantID, c); err != nil {
				return u.fail(i, linked, err)
			}
		}
		debit, credit, err := b.check(tenantID, c, hold)
		if err != nil {
			return u.fail(i, linked, err)
		}
		u.save(debit, credit)
		status, posted := StatusPosted, c.Amount
		switch {
		case c.Pending:
			status, posted = StatusPending, 0
			debit.PendingDebits += c.Amount
			credit.PendingCredits += c.Amount
		case hold != nil:
			status = c.Resolve
			debit.PendingDebits -= hold.Amount
			credit.PendingCredits -= hold.Amount
			if status != StatusPosted {
				posted = 0
			}
		}
		debit.Balance -= posted
		credit.Balance += posted
		debit.Changed, credit.Changed = true, true

		t := b.newTransfer(tenantID, c, status, &u)
		if hold != nil {
			p.Resolved = append(p.Resolved, u.resolve(tenantID, hold, status))
		}
		p.Transfers = append(p.Transfers, t)
		p.Created = append(p.Created, t)
		p.Entries = append(p.Entries,
			entryOf(c.DebitAccountID, t.ID, -posted, debit, b.Now),
			entryOf(c.CreditAccountID, t.ID, posted, credit, b.Now))
	}
	return p, nil
}

// newTransfer makes the transfer of c, with the given status, and
// registers a client-supplied id so that a later transfer of the batch sees it.
func (b *Book) newTransfer(tenantID string, c TransferCreate, status string, u *undo) *Transfer {
	t := &Transfer{
		ID: c.ID, TenantID: tenantID, DebitAccountID: c.DebitAccountID, CreditAccountID: c.CreditAccountID,
		Amount: c.Amount, Currency: c.Currency, Description: c.Description, Status: status,
		Pending: c.Pending, PendingID: c.PendingID, Metadata: c.Metadata, CreatedAt: b.Now,
	}
	t.CurrencyExponent, _ = CurrencyExponent(t.Currency)
	if c.Pending && c.Timeout > 0 {
		at := b.Now.Add(time.Duration(c.Timeout) * time.Second)
		t.ExpiresAt = &at
	}
	if t.ID == "" {
		t.ID = b.NewID()
	} else {
		k := TransferKey{tenantID, t.ID}
		b.Transfers[k] = t
		u.newKeys = append(u.newKeys, k)
	}
	return t
}

// resolvable returns the hold c resolves and c completed from it (its
// accounts, currency and, for a post of 0, its amount), or the rule the
// resolution breaks: the hold must exist, be a hold, still be pending and,
// unless c expires it, not be past its timeout; a post may not exceed it.
// A void or an expiry releases the whole hold.
func (b *Book) resolvable(tenantID string, c TransferCreate) (*Transfer, TransferCreate, *Error) {
	h := b.Transfers[TransferKey{tenantID, c.PendingID}]
	switch {
	case h == nil:
		return nil, c, Errorf(ENOTFOUND, "transfer %s not found", c.PendingID)
	case !h.Pending:
		return nil, c, Errorf(ENOTPENDING, "transfer %s is not pending: only a hold can be posted or voided", h.ID)
	case h.Status == StatusPosted:
		return nil, c, Errorf(EALREADYPOSTED, "transfer %s was posted already", h.ID)
	case h.Status == StatusVoided:
		return nil, c, Errorf(EALREADYVOIDED, "transfer %s was voided already", h.ID)
	case h.Status == StatusExpired:
		return nil, c, Errorf(EEXPIRED, "transfer %s expired", h.ID)
	case c.Resolve == StatusExpired && (h.ExpiresAt == nil || b.Now.Before(*h.ExpiresAt)):
		return nil, c, Errorf(ECONFLICT, "transfer %s is not due to expire", h.ID)
	case c.Resolve != StatusExpired && h.ExpiresAt != nil && !b.Now.Before(*h.ExpiresAt):
		return nil, c, Errorf(EEXPIRED, "transfer %s expired at %s", h.ID, h.ExpiresAt.Format(time.RFC3339))
	case c.Amount > h.Amount:
		return nil, c, Errorf(EEXCEEDSPENDING, "the amount %d is more than the %d transfer %s holds", c.Amount, h.Amount, h.ID)
	}
	c.DebitAccountID, c.CreditAccountID, c.Currency = h.DebitAccountID, h.CreditAccountID, h.Currency
	if c.Amount == 0 || c.Resolve != StatusPosted {
		c.Amount = h.Amount
	}
	return h, c, nil
}

// check returns the accounts of one transfer, or the rule it breaks. A
// resolution of hold only lowers what the hold reserved, so the limits it
// checks are those of the figures after it, which a hold met already.
func (b *Book) check(tenantID string, c TransferCreate, hold *Transfer) (debit, credit *AccountState, err *Error) {
	debit, credit = b.Accounts[c.DebitAccountID], b.Accounts[c.CreditAccountID]
	switch {
	case debit == nil || debit.TenantID != tenantID:
		return nil, nil, Errorf(ENOTFOUND, "account %s not found", c.DebitAccountID)
	case credit == nil || credit.TenantID != tenantID:
		return nil, nil, Errorf(ENOTFOUND, "account %s not found", c.CreditAccountID)
	case debit.Currency != c.Currency || credit.Currency != c.Currency:
		return nil, nil, Errorf(ECURRENCY,
			"transfer currency %s does not match the accounts (%s debit, %s credit)", c.Currency, debit.Currency, credit.Currency)
	}
	if hold != nil {
		return debit, credit, nil
	}
	switch {
	case debit.PendingDebits > math.MaxInt64-c.Amount || credit.PendingCredits > math.MaxInt64-c.Amount,
		debit.Balance < math.MinInt64+c.Amount+debit.PendingDebits ||
			credit.Balance > math.MaxInt64-c.Amount-credit.PendingCredits:
		return nil, nil, Errorf(ELIMIT, "the transfer would overflow a balance")
	case !debit.AllowOverdraft && debit.Balance-debit.PendingDebits-c.Amount < -debit.OverdraftLimit:
		if debit.OverdraftLimit > 0 {
			return nil, nil, Errorf(EINSUFFICIENT, "account %s has insufficient funds within its overdraft limit", c.DebitAccountID)
		}
		return nil, nil, Errorf(EINSUFFICIENT, "account %s has insufficient funds", c.DebitAccountID)
	case credit.MaxBalance != nil && credit.Balance+credit.PendingCredits > *credit.MaxBalance-c.Amount:
		return nil, nil, Errorf(EMAXBALANCE, "the transfer would take account %s above its max_balance", c.CreditAccountID)
	}
	return debit, credit, nil
}

// undo is what a failing request must give back to the book.
type undo struct {
	book     *Book
	accounts []savedAccount
	newKeys  []TransferKey
	holds    []savedHold
}

// savedAccount is what a posting may change on an account.
type savedAccount struct {
	a                               *AccountState
	balance, pendingDebits, credits int64
	changed                         bool
}

type savedHold struct {
	key TransferKey
	was *Transfer
}

func (u *undo) save(accounts ...*AccountState) {
	for _, a := range accounts {
		u.accounts = append(u.accounts, savedAccount{a, a.Balance, a.PendingDebits, a.PendingCredits, a.Changed})
	}
}

// resolve records the hold's new status in the book (a copy, so that the
// undo can put the old one back) and returns it.
func (u *undo) resolve(tenantID string, hold *Transfer, status string) *Transfer {
	k := TransferKey{tenantID, hold.ID}
	u.holds = append(u.holds, savedHold{k, hold})
	h := *hold
	h.Status = status
	u.book.Transfers[k] = &h
	return &h
}

// fail puts the book back as it was before the request and returns err,
// for a linked request naming the failing member.
func (u *undo) fail(i int, linked bool, err *Error) (Posting, error) {
	for j := len(u.accounts) - 1; j >= 0; j-- {
		s := u.accounts[j]
		s.a.Balance, s.a.PendingDebits, s.a.PendingCredits, s.a.Changed = s.balance, s.pendingDebits, s.credits, s.changed
	}
	for _, k := range u.newKeys {
		delete(u.book.Transfers, k)
	}
	for j := len(u.holds) - 1; j >= 0; j-- {
		u.book.Transfers[u.holds[j].key] = u.holds[j].was
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
