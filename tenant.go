package holdfast

import (
	"context"
	"time"
)

// Tenant is one customer of the service. Every account, transfer and key
// belongs to exactly one tenant and is invisible to every other.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is a credential of a tenant. Secret is set only in the response that
// creates the key; the service stores a hash of it and can never show it again.
type APIKey struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Prefix    string     `json:"prefix"` // the first characters of the secret, to tell keys apart
	Secret    string     `json:"secret,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Redacted returns a copy of k without its secret: the form a key may be
// stored in (an Idempotency-Key's outcome), since a secret is never at rest.
func (k *APIKey) Redacted() *APIKey {
	c := *k
	c.Secret = ""
	return &c
}

// APIKeyPrefix starts every API key secret, so that a leaked key is
// recognisable (secret scanners); the rest is APIKeyRandomLen characters of
// unpadded base32 (A-Z, 2-7) encoding 160 random bits.
const (
	APIKeyPrefix    = "hf_"
	APIKeyRandomLen = 32
)

// WellFormedAPIKey reports whether s has the shape of a secret: the prefix
// and exactly APIKeyRandomLen base32 characters. Anything else cannot be a
// key, so it is refused without looking it up.
func WellFormedAPIKey(s string) bool {
	if len(s) != len(APIKeyPrefix)+APIKeyRandomLen || s[:len(APIKeyPrefix)] != APIKeyPrefix {
		return false
	}
	for i := len(APIKeyPrefix); i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// NewTenant is a tenant just created with its first API key: the one time
// the key's secret is shown.
type NewTenant struct {
	Tenant *Tenant `json:"tenant"`
	APIKey *APIKey `json:"api_key"`
}

// TenantCreate is the input to create a tenant.
type TenantCreate struct {
	Name string `json:"name"`
}

// Validate returns EINVALID when the input is unusable.
func (c TenantCreate) Validate() error {
	if err := validText("name", c.Name, 1, 200); err != nil {
		return err
	}
	return nil
}

// TenantService manages tenants and their API keys.
type TenantService interface {
	// CreateTenant creates a tenant and its first API key (with Secret set).
	// With a claim (taken up front), the NewTenant, its key redacted, is
	// stored as the claim's Outcome with them; EIDEMPOTENCYINUSE if the
	// claim was taken over (nothing is created). claim may be nil.
	CreateTenant(ctx context.Context, in TenantCreate, claim *IdempotencyClaim) (*Tenant, *APIKey, error)
	// CreateAPIKey adds a key to a tenant. With a claim, the key, redacted,
	// is stored as the claim's Outcome with it. Returns ENOTFOUND for an
	// unknown tenant, EKEYLIMIT when the tenant already holds as many
	// unrevoked keys as it may, EIDEMPOTENCYINUSE if the claim was taken
	// over (nothing is created).
	CreateAPIKey(ctx context.Context, tenantID string, claim *IdempotencyClaim) (*APIKey, error)
	// ListAPIKeys lists one page of a tenant's keys, revoked ones included,
	// newest first, and the cursor of the next page ("" on the last).
	ListAPIKeys(ctx context.Context, tenantID string, page Page) ([]*APIKey, string, error)
	// RevokeAPIKey revokes a key at once. Returns ENOTFOUND for a key of another tenant.
	RevokeAPIKey(ctx context.Context, tenantID, keyID string) error
	// Authenticate returns the tenant a secret belongs to, or EUNAUTHORIZED.
	Authenticate(ctx context.Context, secret string) (tenantID string, err error)
}

// TenantSummary is a tenant as an operator lists it: never a key's secret,
// only how many keys it holds.
type TenantSummary struct {
	Tenant
	ActiveKeys int `json:"active_keys"` // unrevoked API keys
}
