package holdfast

import (
	"errors"
	"fmt"
)

// Application error codes. Every error a client can see carries one of them;
// the HTTP layer maps each to a status and a stable problem type in a single
// table. Anything else is EINTERNAL and its text never reaches a client.
const (
	EINVALID           = "invalid-request"                       // malformed or out-of-range input
	EUNAUTHORIZED      = "unauthorized"                          // missing, unknown or revoked credentials
	ENOTFOUND          = "not-found"                             // absent, or owned by another tenant
	ECONFLICT          = "conflict"                              // the state forbids it
	EINSUFFICIENT      = "insufficient-funds"                    // a debit would take a balance below zero
	ECURRENCY          = "currency-mismatch"                     // transfer and account currencies differ
	ELIMIT             = "balance-limit"                         // a balance would overflow
	ETRANSFEREXISTS    = "transfer-exists-with-different-fields" // a client id reused for another transfer
	EIDEMPOTENCYINUSE  = "idempotency-key-in-use"                // the first request with this key is still running
	EIDEMPOTENCYREUSED = "idempotency-key-reused"                // the key was used for a different request
	EOVERLOADED        = "overloaded"                            // shed to protect the service; retry later
	EUNAVAILABLE       = "store-unavailable"                     // the database cannot be reached; nothing was done; retry later
	EOUTCOMEUNKNOWN    = "outcome-unknown"                       // the database went away while a write committed: look before retrying
	ENOTPENDING        = "transfer-not-pending"                  // post or void of a transfer that is not a hold
	EALREADYPOSTED     = "transfer-already-posted"               // the hold was posted already
	EALREADYVOIDED     = "transfer-already-voided"               // the hold was voided already
	EEXPIRED           = "transfer-expired"                      // the hold's timeout passed: it is (or is about to be) expired
	EEXCEEDSPENDING    = "exceeds-pending-amount"                // a post of more than the hold holds
	EMAXBALANCE        = "max-balance-exceeded"                  // a credit would take a balance above the account's max_balance
	EIMAGETOOLARGE     = "image-too-large"                       // an image whose header declares too many pixels
	EKEYLIMIT          = "api-key-limit"                         // the tenant holds as many active API keys as it may
	EQUOTA             = "quota-exceeded"                        // a tenant's stored bytes would pass its quota
	EINTERNAL          = "internal"                              // a fault on our side
)

// Error is an application error: a code for machines and a message for people.
// Extensions carry structured detail (e.g. the index of a failed linked
// transfer) and are rendered as problem extension members. Its JSON (in a
// stored Outcome) leaves the cause out.
type Error struct {
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions,omitempty"`
	Err        error          `json:"-"` // optional cause, never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for nil,
// and EINTERNAL for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the human message of the first *Error in err's chain,
// or "Internal error." for anything else and for EINTERNAL, so internals
// never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "Internal error."
}

// IsCode reports whether err carries the application code.
func IsCode(err error, code string) bool { return err != nil && ErrorCode(err) == code }

// IsFinal reports whether err is a final answer to its request: one a
// retry of the same request would only get again (an unknown account,
// insufficient funds, a client id reused for another transfer, ...), so an
// Idempotency-Key keeps it, like a success, and replays it. Invalid input
// (which the client may correct and send under the same key), a state that
// passes (a key in use, the API key limit), an overload, a fault, a
// cancellation or an unknown outcome is not: the key is released for a retry.
func IsFinal(err error) bool {
	switch ErrorCode(err) {
	case ENOTFOUND, EINSUFFICIENT, ECURRENCY, ELIMIT, ETRANSFEREXISTS, EIDEMPOTENCYREUSED, EIMAGETOOLARGE, EQUOTA,
		ENOTPENDING, EALREADYPOSTED, EALREADYVOIDED, EEXPIRED, EEXCEEDSPENDING, EMAXBALANCE:
		return true
	}
	return false
}
