package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/pgtest"
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
