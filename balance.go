package holdfast

import (
	"context"
	"time"
)

// Balance is an account's figures at a moment: what was posted, what holds
// reserved, and what was available (Posted - PendingDebits).
type Balance struct {
	AccountID        string    `json:"account_id"`
	At               time.Time `json:"at"`
	Currency         string    `json:"currency"`
	CurrencyExponent int       `json:"currency_exponent"`
	Posted           int64     `json:"posted"`
	PendingDebits    int64     `json:"pending_debits"`
	PendingCredits   int64     `json:"pending_credits"`
	Available        int64     `json:"available"`
}

// BalanceHistory asks for an account's balance at From, From+Interval, …
// up to To.
type BalanceHistory struct {
	From, To time.Time
	Interval time.Duration // time.Hour or 24 * time.Hour
}

// MaxBalancePoints bounds the points of one balance history.
const MaxBalancePoints = 100_000

// Validate returns EINVALID unless the history is well formed and within
// MaxBalancePoints.
func (h BalanceHistory) Validate() error {
	switch {
	case h.Interval != time.Hour && h.Interval != 24*time.Hour:
		return Errorf(EINVALID, "interval must be hour or day")
	case h.From.IsZero() || h.To.IsZero():
		return Errorf(EINVALID, "from and to are required (RFC 3339)")
	case h.To.Before(h.From):
		return Errorf(EINVALID, "to must not be before from")
	case h.To.Sub(h.From)/h.Interval >= MaxBalancePoints:
		return Errorf(EINVALID, "at most %d points: shorten the range or widen the interval", MaxBalancePoints)
	}
	return nil
}

// MetadataPatch changes metadata by key: a key with a value sets it, a key
// with nil removes it; keys not named are kept.
type MetadataPatch map[string]*string

// Apply returns m changed by the patch (m is left alone), or EINVALID if
// the result breaks the limits on metadata.
func (p MetadataPatch) Apply(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m)+len(p))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = *v
	}
	if err := ValidMetadata(out); err != nil {
		return nil, err
	}
	return out, nil
}

// BalanceService reads balances as they were.
type BalanceService interface {
	// BalanceAt returns the account's balance at a moment, from the entries'
	// running balances (the last entry at or before it; zero before the
	// first). ENOTFOUND for an account not the tenant's.
	BalanceAt(ctx context.Context, tenantID, accountID string, at time.Time) (*Balance, error)
	// BalanceHistory calls fn with the account's balance at each point of h,
	// oldest first, as they are read; an error from fn stops it.
	BalanceHistory(ctx context.Context, tenantID, accountID string, h BalanceHistory, fn func(*Balance) error) error
}
