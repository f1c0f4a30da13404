package holdfast

import (
	"context"
	"time"
)

// Transfer moves Amount from DebitAccountID to CreditAccountID: it writes
// one debit entry and one credit entry, and a mistake is corrected by
// another transfer, never by an edit. Its money moves at once (Status
// posted), or it is a hold (Pending): it reserves Amount on both accounts
// until another transfer resolves it (TigerBeetle's two-phase transfers),
// posting all or part of it, voiding it, or expiring it once ExpiresAt has
// passed. The resolving transfer names the hold in PendingID, and the
// hold's Status becomes posted, voided or expired, its only change (with
// its metadata).
type Transfer struct {
	ID               string            `json:"id"`
	TenantID         string            `json:"-"`
	DebitAccountID   string            `json:"debit_account_id"`
	CreditAccountID  string            `json:"credit_account_id"`
	Amount           int64             `json:"amount"`
	Currency         string            `json:"currency"`
	CurrencyExponent int               `json:"currency_exponent"`
	Description      string            `json:"description"`
	Status           string            `json:"status"`
	Pending          bool              `json:"pending"`
	PendingID        string            `json:"pending_id,omitempty"`
	ExpiresAt        *time.Time        `json:"expires_at,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	CreatedAt        time.Time         `json:"created_at"`
}

// Transfer statuses.
const (
	StatusPending = "pending" // a hold not yet resolved
	StatusPosted  = "posted"  // moved; for a hold, posted by the transfer that names it
	StatusVoided  = "voided"  // a hold released by a void
	StatusExpired = "expired" // a hold released when its timeout passed
)

// ValidStatus reports whether s is a transfer status.
func ValidStatus(s string) bool {
	return s == StatusPending || s == StatusPosted || s == StatusVoided || s == StatusExpired
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
	// MaxTimeout is the longest timeout of a hold, in seconds (a year).
	MaxTimeout = 366 * 24 * 3600
)

// TransferCreate is the input to create a transfer. ID is optional: a
// client-chosen UUID makes the create idempotent by itself (the same ID with
// the same fields returns the existing transfer; with other fields,
// ETRANSFEREXISTS).
//
// Pending makes it a hold, which expires Timeout seconds after it is
// created (0: never). PendingID and Resolve are set by the service, never
// by a client: a transfer that resolves the hold PendingID into the status
// Resolve (posted, voided or expired).
type TransferCreate struct {
	ID              string            `json:"id,omitempty"`
	DebitAccountID  string            `json:"debit_account_id"`
	CreditAccountID string            `json:"credit_account_id"`
	Amount          int64             `json:"amount"`
	Currency        string            `json:"currency"`
	Description     string            `json:"description,omitempty"`
	Pending         bool              `json:"pending,omitempty"`
	Timeout         int64             `json:"timeout,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	PendingID       string            `json:"-"`
	Resolve         string            `json:"-"`
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
	switch {
	case c.Timeout < 0 || c.Timeout > MaxTimeout:
		return Errorf(EINVALID, "timeout must be between 0 and %d seconds", MaxTimeout)
	case c.Timeout > 0 && !c.Pending:
		return Errorf(EINVALID, "timeout is for a pending transfer (a hold)")
	case c.Pending && c.PendingID != "":
		return Errorf(EINVALID, "a transfer that resolves a hold cannot be pending")
	case c.PendingID == "" && c.Resolve != "", c.PendingID != "" && c.Resolve != StatusPosted && c.Resolve != StatusVoided && c.Resolve != StatusExpired:
		return Errorf(EINVALID, "a hold is resolved by posting, voiding or expiring it")
	}
	if err := ValidMetadata(c.Metadata); err != nil {
		return err
	}
	return validText("description", c.Description, 0, MaxDescription)
}

// Matches reports whether an existing transfer has the fields of c (the
// TigerBeetle rule for a repeated client-supplied id).
func (c TransferCreate) Matches(t *Transfer) bool {
	if c.Resolve != "" {
		// The client chose the id of a post or void: it names the same
		// hold, action and amount (the accounts follow from the hold).
		return CanonicalID(c.PendingID) == t.PendingID && c.Resolve == t.Status && c.Amount == t.Amount
	}
	return CanonicalID(c.DebitAccountID) == t.DebitAccountID &&
		CanonicalID(c.CreditAccountID) == t.CreditAccountID &&
		c.Amount == t.Amount && c.Currency == t.Currency && c.Description == t.Description &&
		c.Pending == t.Pending && t.PendingID == "" && c.Timeout == t.timeoutSeconds()
}

// timeoutSeconds returns the timeout a hold was created with.
func (t *Transfer) timeoutSeconds() int64 {
	if t.ExpiresAt == nil {
		return 0
	}
	return int64(t.ExpiresAt.Sub(t.CreatedAt) / time.Second)
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

// TransferResolve is the input to post or void a hold. ID, optional, is
// the client-chosen id of the resolving transfer, idempotent like a
// transfer's. Amount is for a post only: 0 posts the whole hold, less
// posts that much and releases the rest.
type TransferResolve struct {
	ID       string            `json:"id,omitempty"`
	Amount   int64             `json:"amount,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ResolveRequest is one call of TransferService.ResolveTransfer.
type ResolveRequest struct {
	TenantID  string
	PendingID string // the hold
	Action    string // StatusPosted or StatusVoided
	In        TransferResolve
	// Idempotency is as in TransferRequest.
	Idempotency *IdempotencyClaim
}

// TransferService moves money. Writes serialize on the rows they touch (never
// on a process-wide lock) and are safe with many replicas on one database.
type TransferService interface {
	TransferSearcher
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
	// ResolveTransfer posts or voids a hold through the same batches as
	// CreateTransfers, and returns the resolving transfer. Errors, beside
	// CreateTransfers': ENOTFOUND (no such hold), ENOTPENDING (not a hold),
	// EALREADYPOSTED, EALREADYVOIDED, EEXPIRED (the hold was resolved
	// already, or its timeout has passed), EEXCEEDSPENDING (a post of more
	// than is held).
	ResolveTransfer(ctx context.Context, req ResolveRequest) (out *Transfer, replayed *Outcome, err error)
	// ExpireDue expires up to limit holds whose timeout has passed, through
	// the same batches, and returns how many it expired. Safe to run in
	// every replica at once: a hold is resolved at most once.
	ExpireDue(ctx context.Context, limit int) (int, error)
	// FindTransfer returns ENOTFOUND for an unknown transfer or one of another tenant.
	FindTransfer(ctx context.Context, tenantID, id string) (*Transfer, error)
	// ListTransfers lists the transfers touching an account, newest first.
	// Returns ENOTFOUND when the account is not the tenant's.
	ListTransfers(ctx context.Context, tenantID, accountID string, page Page) ([]*Transfer, string, error)
}
