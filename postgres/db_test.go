package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// TestAcquireTimeout: with every connection taken, a query fails with
// context.DeadlineExceeded after the acquire timeout although its own
// context is live, instead of waiting for that context; once a connection
// is free, queries run again.
func TestAcquireTimeout(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 1, AcquireTimeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The first connection is made inside Acquire, within the acquire
	// timeout: on a busy machine connecting may take longer, so try again.
	held, err := db.Pool.Acquire(context.Background())
	for errors.Is(err, context.DeadlineExceeded) {
		held, err = db.Pool.Acquire(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err = db.Pool.Exec(ctx, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("Exec with the pool exhausted: %v (ctx: %v), want DeadlineExceeded from the acquire timeout", err, ctx.Err())
	}
	held.Release()
	if _, err := db.Pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("Exec with a free connection: %v", err)
	}
}

// TestStatementTimeout: the configured statement_timeout reaches the server.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(t), StatementTimeout: 1234 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got string
	if err := db.Pool.QueryRow(context.Background(), "SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "1234ms" {
		t.Fatalf("statement_timeout = %s, want 1234ms", got)
	}
}
