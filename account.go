package holdfast

import (
	"context"
	"encoding/json"
	"time"
)

// Account holds money of one currency. Its Balance (what is posted) always
// equals the sum of its entries. Holds reserve money on it without posting
// it: PendingDebits (held on the way out) and PendingCredits (on the way
// in). What it may still spend is Available, Balance - PendingDebits,
// which may go below zero only by OverdraftLimit, or without a bound when
// AllowOverdraft is set; Balance + PendingCredits may not pass MaxBalance.
type Account struct {
	ID               string            `json:"id"`
	TenantID         string            `json:"-"`
	Currency         string            `json:"currency"`
	CurrencyExponent int               `json:"currency_exponent"`
	AllowOverdraft   bool              `json:"allow_overdraft"`
	OverdraftLimit   int64             `json:"overdraft_limit"`
	MaxBalance       *int64            `json:"max_balance"`
	Balance          int64             `json:"balance"`
	Posted           int64             `json:"posted"`
	PendingDebits    int64             `json:"pending_debits"`
	PendingCredits   int64             `json:"pending_credits"`
	Available        int64             `json:"available"`
	Metadata         map[string]string `json:"metadata"`
	CreatedAt        time.Time         `json:"created_at"`
}

// Derive sets the figures that follow from the stored ones: Posted (the
// balance under its two-phase name), Available and the currency exponent.
func (a *Account) Derive() {
	a.Posted = a.Balance
	a.Available = a.Balance - a.PendingDebits
	a.CurrencyExponent, _ = CurrencyExponent(a.Currency)
}

// Limits on account metadata.
const (
	MaxMetadataKeys  = 50
	MaxMetadataKey   = 40
	MaxMetadataValue = 500
)

// MaxLimit bounds overdraft_limit and max_balance: far beyond any real
// account, and far enough inside int64 that no sum of them overflows.
const MaxLimit = 1_000_000_000_000_000_000

// AccountCreate is the input to create an account.
type AccountCreate struct {
	Currency       string            `json:"currency"`
	AllowOverdraft bool              `json:"allow_overdraft"`
	OverdraftLimit int64             `json:"overdraft_limit,omitempty"`
	MaxBalance     *int64            `json:"max_balance,omitempty"`
	Metadata       map[string]string `json:"metadata"`
}

// Validate returns EINVALID when the input is unusable.
func (c AccountCreate) Validate() error {
	if err := ValidCurrency(c.Currency); err != nil {
		return err
	}
	switch {
	case c.OverdraftLimit < 0 || c.OverdraftLimit > MaxLimit:
		return Errorf(EINVALID, "overdraft_limit must be between 0 and %d", int64(MaxLimit))
	case c.AllowOverdraft && c.OverdraftLimit > 0:
		return Errorf(EINVALID, "allow_overdraft allows an unbounded overdraft; give it or overdraft_limit, not both")
	case c.MaxBalance != nil && (*c.MaxBalance < 0 || *c.MaxBalance > MaxLimit):
		return Errorf(EINVALID, "max_balance must be between 0 and %d", int64(MaxLimit))
	}
	return ValidMetadata(c.Metadata)
}

// ValidMetadata returns EINVALID unless m fits the limits on metadata.
func ValidMetadata(m map[string]string) error {
	if len(m) > MaxMetadataKeys {
		return Errorf(EINVALID, "metadata has more than %d keys", MaxMetadataKeys)
	}
	for k, v := range m {
		if err := validText("metadata key", k, 1, MaxMetadataKey); err != nil {
			return err
		}
		if err := validText("metadata value", v, 0, MaxMetadataValue); err != nil {
			return err
		}
	}
	return nil
}

// MetadataJSON returns the metadata as a JSON object, never null.
func (c AccountCreate) MetadataJSON() []byte { return MetadataJSON(c.Metadata) }

// MetadataJSON returns m as a JSON object, never null.
func MetadataJSON(m map[string]string) []byte {
	if len(m) == 0 {
		return []byte("{}")
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return b
}

// AccountService creates and reads accounts. Reads are snapshots that never
// wait for writers.
type AccountService interface {
	// CreateAccount creates an account with a zero balance. With a claim
	// (taken up front), the account is stored as the claim's Outcome in the
	// same transaction; EIDEMPOTENCYINUSE if the claim was taken over
	// (nothing is created). claim may be nil.
	CreateAccount(ctx context.Context, tenantID string, in AccountCreate, claim *IdempotencyClaim) (*Account, error)
	// FindAccount returns ENOTFOUND for an unknown account or one of another tenant.
	FindAccount(ctx context.Context, tenantID, id string) (*Account, error)
	// UpdateAccountMetadata changes an account's metadata by key.
	// ENOTFOUND for an account not the tenant's.
	UpdateAccountMetadata(ctx context.Context, tenantID, id string, patch MetadataPatch) (*Account, error)
	// ListAccounts lists the tenant's accounts, oldest first.
	ListAccounts(ctx context.Context, tenantID string, page Page) ([]*Account, string, error)
}
