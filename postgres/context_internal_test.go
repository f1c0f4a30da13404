package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// A statement cut off by statement_timeout is EOVERLOADED (503), not a fault.
func TestContextError_StatementTimeout(t *testing.T) {
	db, err := Open(context.Background(), Config{URL: pgtest.NewDatabase(t), StatementTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Pool.Exec(context.Background(), "SELECT pg_sleep(1)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("pg_sleep past the statement timeout: %v", err)
	}
	got := fmt.Errorf("find account: %w", contextError(context.Background(), err))
	if !holdfast.IsCode(got, holdfast.EOVERLOADED) {
		t.Fatalf("code %s, want %s", holdfast.ErrorCode(got), holdfast.EOVERLOADED)
	}
}

// A server that ends the session or a connection that goes away is
// EUNAVAILABLE; an error of the statement itself is not. A failure after
// COMMIT was sent is in doubt unless the server reported an error of the
// transaction (which rolled it back) or nothing was sent.
func TestContextError_ConnectionFailures(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		err                  error
		unavailable, inDoubt bool
	}{
		{"admin shutdown", &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, true, true},
		{"crash shutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P02"}, true, true},
		{"cannot connect now", &pgconn.PgError{Severity: "FATAL", Code: "57P03"}, true, true},
		{"connection failure", &pgconn.PgError{Severity: "FATAL", Code: "08006"}, true, true},
		{"connection lost", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true, true},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true, true},
		{"unique violation", &pgconn.PgError{Severity: "ERROR", Code: "23505"}, false, false},
		{"serialization failure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, false, false},
	} {
		got := contextError(context.Background(), tc.err)
		if holdfast.IsCode(got, holdfast.EUNAVAILABLE) != tc.unavailable {
			t.Errorf("%s: code %s, unavailable want %v", tc.name, holdfast.ErrorCode(got), tc.unavailable)
		}
		if inDoubt(tc.err) != tc.inDoubt {
			t.Errorf("%s: inDoubt = %v, want %v", tc.name, !tc.inDoubt, tc.inDoubt)
		}
	}
	coded := holdfast.Errorf(holdfast.ENOTFOUND, "x")
	if got := contextError(context.Background(), coded); got != coded {
		t.Errorf("a coded error became %v", got)
	}
}
