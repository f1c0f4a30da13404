package holdfast

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Idempotency defaults (Stripe keeps keys at least 24 hours).
const (
	// MaxIdempotencyKey is the longest Idempotency-Key, in bytes.
	MaxIdempotencyKey = 255
	// DefaultIdempotencyRetention is how long a key is kept at least, and the least a server may keep one.
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

// IdempotencyClaim is a request's Idempotency-Key on its way to a write,
// passed to the write as an argument.
//
// Two ways to hold it: the key may be claimed before the write
// (IdempotencyService.Claim sets Token), and a write service given the
// claim stores its Outcome in the same transaction as its effects; or, for
// writes that batch requests (transfers), the claim arrives unclaimed
// (Token empty) and the write claims, checks and completes the key inside
// its own transaction, so a request costs no separate round trip and no
// claim can outlive a crash. Either way a crash can never leave effects
// without their outcome, nor an outcome without its effects.
type IdempotencyClaim struct {
	TenantID    string
	Key         string
	Fingerprint []byte // hash of method, path, query and body: what makes a retry the same request
	Token       string // proves ownership of a key claimed up front; a takeover changes it
	RequestID   string // the id of the request, kept in its Outcome
}

// Outcome is the answer a write with an Idempotency-Key stores with its
// effects, so that a retry of the same request is answered with it instead
// of running again: the write's result, as JSON of its domain type, or its
// final error (see IsFinal); and the id of the request that ran it. It is
// stored as its JSON.
type Outcome struct {
	RequestID string          `json:"request_id,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"` // absent when Err is set
	Err       *Error          `json:"error,omitempty"`  // Code, Message and Extensions only
}

// NewOutcome returns the outcome to store for the request requestID whose
// write returned result and err. It returns nil when err is not final:
// there is nothing to store, and the key is released so that the client may
// retry. It fails only when result cannot be encoded as JSON.
func NewOutcome(requestID string, result any, err error) (*Outcome, error) {
	if err != nil {
		if !IsFinal(err) {
			return nil, nil
		}
		var e *Error
		errors.As(err, &e) // a final error carries a code, so it is an *Error
		return &Outcome{RequestID: requestID, Err: &Error{Code: e.Code, Message: e.Message, Extensions: e.Extensions}}, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	return &Outcome{RequestID: requestID, Result: b}, nil
}

// EncodeOutcome returns the stored form (the JSON) of the outcome
// NewOutcome returns for the same arguments, or nil when there is nothing
// to store (err is not final). It encodes result once, straight into the
// outcome: the form for a write path that stores many outcomes at once.
func EncodeOutcome(requestID string, result any, err error) ([]byte, error) {
	if err != nil {
		o, _ := NewOutcome(requestID, nil, err) // no result to encode
		if o == nil {
			return nil, nil
		}
		return json.Marshal(o)
	}
	return json.Marshal(&struct {
		RequestID string `json:"request_id,omitempty"`
		Result    any    `json:"result"`
	}{requestID, result})
}

// DecodeOutcome reads an outcome stored as JSON. Numbers in its error's
// extensions keep their literal form, so that they render as they were.
func DecodeOutcome(b []byte) (*Outcome, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var o Outcome
	if err := d.Decode(&o); err != nil {
		return nil, err
	}
	return &o, nil
}

// Decode decodes the stored result into v, a pointer to the write's result
// type; a result stored as null or absent leaves v as it is.
func (o *Outcome) Decode(v any) error {
	if len(o.Result) == 0 {
		return nil
	}
	return json.Unmarshal(o.Result, v)
}

// IdempotencyService claims, completes and releases keys claimed before a
// write. Keys are scoped per tenant.
type IdempotencyService interface {
	// Claim takes key for a request whose method, path and body hash to
	// fingerprint. It returns a claim when this request should run, or the
	// stored outcome when the key already completed with the same
	// fingerprint. Errors: EIDEMPOTENCYINUSE while another request holds the
	// key (a claim older than the lock timeout is taken over instead);
	// EIDEMPOTENCYREUSED when the key was used with another fingerprint.
	Claim(ctx context.Context, tenantID, key string, fingerprint []byte) (*IdempotencyClaim, *Outcome, error)
	// Complete stores the outcome of a request whose effects, if any, lie
	// outside the database (or that failed finally and had none). Returns
	// EIDEMPOTENCYINUSE if the claim was taken over.
	Complete(ctx context.Context, claim *IdempotencyClaim, o *Outcome) error
	// Release gives the key up so the client may retry (after a fault or an overload).
	Release(ctx context.Context, claim *IdempotencyClaim) error
}
