package holdfast

import (
	"context"
	"time"
)

// Idempotency defaults (Stripe keeps keys at least 24 hours).
const (
	// MaxIdempotencyKey is the longest Idempotency-Key, in bytes.
	MaxIdempotencyKey = 255
	// DefaultIdempotencyRetention is how long a key is kept before the reaper may delete it.
	DefaultIdempotencyRetention = 24 * time.Hour
	// DefaultIdempotencyLockTimeout is how long a claim holds its key before
	// another request may take it over (the first one is presumed dead).
	DefaultIdempotencyLockTimeout = time.Minute
)

// ValidIdempotencyKey returns EINVALID unless key is 1..255 printable ASCII characters.
func ValidIdempotencyKey(key string) error {
	if len(key) == 0 || len(key) > MaxIdempotencyKey {
		return Errorf(EINVALID, "Idempotency-Key must be 1 to %d printable ASCII characters", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return Errorf(EINVALID, "Idempotency-Key must be 1 to %d printable ASCII characters", MaxIdempotencyKey)
		}
	}
	return nil
}

// Response is a stored HTTP response: what a replay sends back, byte for byte.
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// IdempotencyClaim is a request's Idempotency-Key on its way to a write.
//
// Two ways to hold it: the HTTP layer may claim the key before the write
// (IdempotencyService.Claim sets Token), and a write service that sees the
// claim in its context stores the response in the same transaction as its
// effects; or, for writes that batch requests (transfers), the claim arrives
// unclaimed (Token empty, Fingerprint set) and the write claims, checks and
// completes the key inside its own transaction, so a request costs no
// separate round trip and no claim can outlive a crash. Either way a crash
// can never leave effects without their response, nor a response without
// its effects.
type IdempotencyClaim struct {
	TenantID    string
	Key         string
	Token       string // proves ownership of a key claimed up front; a takeover changes it
	Fingerprint []byte // hash of method, path and body; used when the write claims the key itself

	// Render turns a write's outcome (its result, or its error) into the
	// response to send, and says whether to store it for replay: successes
	// and final client errors are stored; faults and overloads are not.
	Render func(result any, err error) (resp Response, store bool)

	stored   *Response
	replayed *Response
}

// SetStored records that resp was stored with the write's effects.
func (c *IdempotencyClaim) SetStored(resp Response) { c.stored = &resp }

// Stored returns the response stored with the write, or nil if none was.
func (c *IdempotencyClaim) Stored() *Response { return c.stored }

// SetReplayed records that the key had already completed: resp is the
// stored response of the first request, to be sent again; nothing ran.
func (c *IdempotencyClaim) SetReplayed(resp Response) { c.replayed = &resp }

// Replayed returns the earlier response to replay, or nil.
func (c *IdempotencyClaim) Replayed() *Response { return c.replayed }

// IdempotencyService claims, completes and releases keys. Keys are scoped per tenant.
type IdempotencyService interface {
	// Claim takes key for a request whose method, path and body hash to
	// fingerprint. It returns a claim when this request should run, or the
	// stored response when the key already completed with the same
	// fingerprint. Errors: EIDEMPOTENCYINUSE while another request holds the
	// key (a claim older than the lock timeout is taken over instead);
	// EIDEMPOTENCYREUSED when the key was used with another fingerprint.
	Claim(ctx context.Context, tenantID, key string, fingerprint []byte) (*IdempotencyClaim, *Response, error)
	// Complete stores resp for a request that ran without effects (a final
	// client error). Returns EIDEMPOTENCYINUSE if the claim was taken over.
	Complete(ctx context.Context, claim *IdempotencyClaim, resp Response) error
	// Release gives the key up so the client may retry (after a fault or an overload).
	Release(ctx context.Context, claim *IdempotencyClaim) error
}

type claimKey struct{}

// NewContextWithClaim returns a context carrying the request's claim.
func NewContextWithClaim(ctx context.Context, c *IdempotencyClaim) context.Context {
	return context.WithValue(ctx, claimKey{}, c)
}

// ClaimFromContext returns the request's claim, or nil.
func ClaimFromContext(ctx context.Context) *IdempotencyClaim {
	c, _ := ctx.Value(claimKey{}).(*IdempotencyClaim)
	return c
}
