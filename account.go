package holdfast

import (
	"context"
	"encoding/json"
	"time"
)

// Account holds money of one currency. Its Balance always equals the sum of
// its entries; it may go below zero only when AllowOverdraft is set.
type Account struct {
	ID             string            `json:"id"`
	TenantID       string            `json:"-"`
	Currency       string            `json:"currency"`
	AllowOverdraft bool              `json:"allow_overdraft"`
	Balance        int64             `json:"balance"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      time.Time         `json:"created_at"`
}

// Limits on account metadata.
const (
	MaxMetadataKeys  = 50
	MaxMetadataKey   = 40
	MaxMetadataValue = 500
)

// AccountCreate is the input to create an account.
type AccountCreate struct {
	Currency       string            `json:"currency"`
	AllowOverdraft bool              `json:"allow_overdraft"`
	Metadata       map[string]string `json:"metadata"`
}

// Validate returns EINVALID when the input is unusable.
func (c AccountCreate) Validate() error {
	if err := ValidCurrency(c.Currency); err != nil {
		return err
	}
	if len(c.Metadata) > MaxMetadataKeys {
		return Errorf(EINVALID, "metadata has more than %d keys", MaxMetadataKeys)
	}
	for k, v := range c.Metadata {
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
func (c AccountCreate) MetadataJSON() []byte {
	if len(c.Metadata) == 0 {
		return []byte("{}")
	}
	b, _ := json.Marshal(c.Metadata) // a map[string]string always marshals
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
	// ListAccounts lists the tenant's accounts, oldest first.
	ListAccounts(ctx context.Context, tenantID string, page Page) ([]*Account, string, error)
}
