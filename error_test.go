package holdfast_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
)

func TestErrorCode(t *testing.T) {
	t.Parallel()
	notFound := holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"application error", notFound, holdfast.ENOTFOUND},
		{"wrapped", fmt.Errorf("create transfer: %w", notFound), holdfast.ENOTFOUND},
		{"wrapped twice", fmt.Errorf("handler: %w", fmt.Errorf("create transfer: %w", notFound)), holdfast.ENOTFOUND},
		{"joined", errors.Join(errors.New("rollback failed"), notFound), holdfast.ENOTFOUND},
		{"outer code wins", &holdfast.Error{Code: holdfast.ECONFLICT, Message: "m", Err: notFound}, holdfast.ECONFLICT},
		{"plain error", errors.New("connection reset by peer"), holdfast.EINTERNAL},
		{"wrapped plain error", fmt.Errorf("find account: %w", context.Canceled), holdfast.EINTERNAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := holdfast.ErrorCode(tc.err); got != tc.want {
				t.Errorf("ErrorCode() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	const secret = "password=hunter2 host=db.internal"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"application error", holdfast.Errorf(holdfast.EINVALID, "amount must be %s", "positive"), "amount must be positive"},
		{"wrapped", fmt.Errorf("create transfer: %w", holdfast.Errorf(holdfast.ECONFLICT, "key revoked")), "key revoked"},
		{"cause hidden", &holdfast.Error{Code: holdfast.EOVERLOADED, Message: "retry later", Err: errors.New(secret)}, "retry later"},
		{"plain error", errors.New(secret), "Internal error."},
		{"wrapped plain error", fmt.Errorf("connect: %w", errors.New(secret)), "Internal error."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := holdfast.ErrorMessage(tc.err)
			if got != tc.want || strings.Contains(got, "hunter2") {
				t.Errorf("ErrorMessage() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIsCode(t *testing.T) {
	t.Parallel()
	notFound := fmt.Errorf("find account: %w", holdfast.Errorf(holdfast.ENOTFOUND, "account not found"))
	if !holdfast.IsCode(notFound, holdfast.ENOTFOUND) {
		t.Error("IsCode(wrapped ENOTFOUND, ENOTFOUND) = false")
	}
	if holdfast.IsCode(notFound, holdfast.ECONFLICT) {
		t.Error("IsCode(wrapped ENOTFOUND, ECONFLICT) = true")
	}
	if !holdfast.IsCode(errors.New("boom"), holdfast.EINTERNAL) {
		t.Error("IsCode(plain error, EINTERNAL) = false")
	}
	if holdfast.IsCode(nil, "") || holdfast.IsCode(nil, holdfast.EINTERNAL) {
		t.Error("IsCode(nil, …) = true")
	}
}

func TestErrorUnwrap(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection reset by peer")
	err := fmt.Errorf("create transfer: %w",
		&holdfast.Error{Code: holdfast.EOVERLOADED, Message: "retry later", Err: cause})
	if !errors.Is(err, cause) {
		t.Error("errors.Is(err, cause) = false through *Error")
	}
	if errors.Is(err, context.Canceled) {
		t.Error("errors.Is(err, context.Canceled) = true")
	}
	var e *holdfast.Error
	if !errors.As(err, &e) || e.Code != holdfast.EOVERLOADED {
		t.Fatalf("errors.As(err, *Error) = %v, want the EOVERLOADED error", e)
	}
	if got := holdfast.Errorf(holdfast.EINVALID, "bad").Unwrap(); got != nil {
		t.Errorf("Unwrap() without a cause = %v, want nil", got)
	}
}

func TestErrorError(t *testing.T) {
	t.Parallel()
	if got, want := holdfast.Errorf(holdfast.ENOTFOUND, "account not found").Error(), "not-found: account not found"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// The cause is in the text for logs, never in ErrorMessage.
	err := &holdfast.Error{Code: holdfast.EINTERNAL, Message: "m", Err: errors.New("disk full")}
	if got, want := err.Error(), "internal: m: disk full"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
