package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// TestWriter_Backpressure: while the committer is stuck (another
// transaction holds an account's row lock), a full queue refuses new
// transfers at once with EOVERLOADED, and once the lock goes the queued
// work commits.
func TestWriter_Backpressure(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	transfers := postgres.NewTransferService(db)
	w, err := postgres.NewWriter(transfers, postgres.WriterConfig{MaxBatch: 1, QueueSize: 2, Committers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	a := MustAccount(t, db, tenant, "USD", true)
	b := MustAccount(t, db, tenant, "USD", true)
	in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 1, Currency: "USD"}}

	// Hold b's row lock: the committer's batch will wait on it.
	blocker, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(context.Background())
	if _, err := blocker.Exec(context.Background(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", b.ID); err != nil {
		t.Fatal(err)
	}

	results := make(chan error, 3)
	submit := func() {
		go func() {
			_, err := transfers.CreateTransfers(context.Background(), tenant, in, false)
			results <- err
		}()
	}
	// One transfer reaches the committer and blocks on the lock.
	submit()
	waitFor(t, func() bool { return lockWaiters(t, db) == 1 })
	// Two more fill the queue.
	submit()
	submit()
	waitFor(t, func() bool { return w.QueueDepth() == 2 })

	// The queue is full: refused at once.
	if _, err := transfers.CreateTransfers(context.Background(), tenant, in, false); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("full queue: err = %v, want %s", err, holdfast.EOVERLOADED)
	}
	// Release the lock: everything queued commits.
	if err := blocker.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("queued transfer: %v", err)
		}
	}
	var balance int64
	db.Pool.QueryRow(context.Background(), "SELECT balance FROM accounts WHERE id = $1", b.ID).Scan(&balance)
	if balance != 3 {
		t.Fatalf("balance %d, want 3", balance)
	}
	AssertLedgerConsistent(t, db, tenant)
}

// TestWriter_DeadlineWhileQueued: a caller whose deadline passes while its
// transfer waits behind a stuck batch gets its context's error.
func TestWriter_DeadlineWhileQueued(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	transfers := postgres.NewTransferService(db)
	w, err := postgres.NewWriter(transfers, postgres.WriterConfig{MaxBatch: 1, Committers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	a := MustAccount(t, db, tenant, "USD", true)
	b := MustAccount(t, db, tenant, "USD", true)
	in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 1, Currency: "USD"}}
	blocker, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(context.Background())
	if _, err := blocker.Exec(context.Background(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", b.ID); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := transfers.CreateTransfers(context.Background(), tenant, in, false)
		first <- err
	}()
	waitFor(t, func() bool { return lockWaiters(t, db) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() {
		_, err := transfers.CreateTransfers(ctx, tenant, in, false)
		queued <- err
	}()
	waitFor(t, func() bool { return w.QueueDepth() == 1 })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gone while queued: err = %v, want context.Canceled", err)
	}
	blocker.Rollback(context.Background())
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	AssertLedgerConsistent(t, db, tenant)
}

// lockWaiters counts backends of this database waiting for a row lock.
func lockWaiters(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds, failing t after a generous bound.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never held")
}
