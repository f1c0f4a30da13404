package holdfast

import (
	"context"
	"time"
)

// Transfer moves Amount from DebitAccountID to CreditAccountID. It is
// immutable: it writes one debit entry and one credit entry, and a mistake is
// corrected by another transfer, never by an edit.
type Transfer struct {
	ID              string    `json:"id"`
	TenantID        string    `json:"-"`
	DebitAccountID  string    `json:"debit_account_id"`
	CreditAccountID string    `json:"credit_account_id"`
	Amount          int64     `json:"amount"`
	Currency        string    `json:"currency"`
	Description     string    `json:"description"`
	CreatedAt       time.Time `json:"created_at"`
}

// Limits on transfers.
const (
	// MaxAmount is the largest amount of one transfer, in minor units
	// (10^15: ten trillion of a two-decimal currency).
	MaxAmount = 1_000_000_000_000_000
	// MaxDescription is the longest description, in bytes.
	MaxDescription = 500
	// MaxLinked is the most transfers one linked request may carry.
	MaxLinked = 100
)

// TransferCreate is the input to create a transfer. ID is optional: a
// client-chosen UUID makes the create idempotent by itself (the same ID with
// the same fields returns the existing transfer; with other fields,
// ETRANSFEREXISTS).
type TransferCreate struct {
	ID              string `json:"id,omitempty"`
	DebitAccountID  string `json:"debit_account_id"`
	CreditAccountID string `json:"credit_account_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
	Description     string `json:"description,omitempty"`
}

// Validate returns EINVALID when the input is unusable on its face; checks
// that need the accounts (existence, currency, funds) happen when it is applied.
func (c TransferCreate) Validate() error {
	if c.ID != "" {
		if err := ValidID("id", c.ID); err != nil {
			return err
		}
	}
	if err := ValidID("debit_account_id", c.DebitAccountID); err != nil {
		return err
	}
	if err := ValidID("credit_account_id", c.CreditAccountID); err != nil {
		return err
	}
	if CanonicalID(c.DebitAccountID) == CanonicalID(c.CreditAccountID) {
		return Errorf(EINVALID, "debit_account_id and credit_account_id must differ")
	}
	if c.Amount <= 0 {
		return Errorf(EINVALID, "amount must be a positive whole number of minor units")
	}
	if c.Amount > MaxAmount {
		return Errorf(EINVALID, "amount must be at most %d", int64(MaxAmount))
	}
	if err := ValidCurrency(c.Currency); err != nil {
		return err
	}
	return validText("description", c.Description, 0, MaxDescription)
}

// Matches reports whether an existing transfer has the fields of c (the
// TigerBeetle rule for a repeated client-supplied id).
func (c TransferCreate) Matches(t *Transfer) bool {
	return CanonicalID(c.DebitAccountID) == t.DebitAccountID &&
		CanonicalID(c.CreditAccountID) == t.CreditAccountID &&
		c.Amount == t.Amount && c.Currency == t.Currency && c.Description == t.Description
}

// TransferRequest is one call of TransferService.CreateTransfers.
type TransferRequest struct {
	TenantID  string
	Transfers []TransferCreate
	// Linked applies Transfers all or nothing; without it, exactly one
	// transfer is expected.
	Linked bool
	// Idempotency is the request's Idempotency-Key, unclaimed (no Token),
	// or nil. The service claims the key in the transaction that applies
	// the transfers and stores their Outcome there.
	Idempotency *IdempotencyClaim
}

// TransferService moves money. Writes serialize on the rows they touch (never
// on a process-wide lock) and are safe with many replicas on one database.
type TransferService interface {
	// CreateTransfers applies the request's transfers. Linked, they are
	// applied all-or-nothing, and a failure carries the code of the failing
	// member and its index (Extensions["index"]). With an Idempotency-Key
	// that already completed with the same fingerprint, nothing is applied
	// and the first request's Outcome is returned as replayed instead.
	// Errors: ENOTFOUND (an account unknown to the tenant), ECURRENCY,
	// EINSUFFICIENT, ELIMIT, ETRANSFEREXISTS, EIDEMPOTENCYINUSE (the key's
	// first request is still running), EIDEMPOTENCYREUSED (the key was used
	// for another request), EOVERLOADED, EUNAVAILABLE (the database cannot
	// be reached), ctx's error (its deadline passed before the transfers
	// began to be applied), all of which mean nothing was applied; and
	// EOUTCOMEUNKNOWN, when the connection failed while they committed and
	// the database could not be asked. Once the transfers have begun to be
	// applied, the call returns their outcome even after ctx ends.
	CreateTransfers(ctx context.Context, req TransferRequest) (out []*Transfer, replayed *Outcome, err error)
	// FindTransfer returns ENOTFOUND for an unknown transfer or one of another tenant.
	FindTransfer(ctx context.Context, tenantID, id string) (*Transfer, error)
	// ListTransfers lists the transfers touching an account, newest first.
	// Returns ENOTFOUND when the account is not the tenant's.
	ListTransfers(ctx context.Context, tenantID, accountID string, page Page) ([]*Transfer, string, error)
}
