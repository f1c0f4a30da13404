package postgres_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/prometheus/client_golang/prometheus"
)

// stuck is a group-commit writer whose committer is stuck: another
// transaction holds the row lock of the credit account of in.
type stuck struct {
	db        *postgres.DB
	tenant    string
	transfers *postgres.TransferService
	in        []holdfast.TransferCreate
	release   func()
}

// setupStuck starts a writer with cfg and locks the account its transfers
// credit; the first transfer submitted then waits on the lock in the
// committer, and the next ones in the queue.
func setupStuck(t *testing.T, cfg postgres.WriterConfig) *stuck {
	t.Helper()
	db := MustOpenDB(t)
	s := &stuck{db: db, tenant: MustTenant(t, db), transfers: MustTransfers(t, db, postgres.TransferConfig{GroupCommit: true, Writer: cfg})}
	a := MustAccount(t, db, s.tenant, "USD", true)
	b := MustAccount(t, db, s.tenant, "USD", true)
	s.in = []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 1, Currency: "USD"}}
	blocker, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blocker.Rollback(context.Background()) })
	if _, err := blocker.Exec(context.Background(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", b.ID); err != nil {
		t.Fatal(err)
	}
	s.release = func() { blocker.Rollback(context.Background()) }
	return s
}

// submit sends a transfer in the background; its outcome arrives on the channel.
func (s *stuck) submit(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := s.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: s.tenant, Transfers: s.in})
		done <- err
	}()
	return done
}

// assertCredited fails t unless the account s's transfers credit holds want.
func (s *stuck) assertCredited(t *testing.T, want int64) {
	t.Helper()
	var balance int64
	if err := s.db.Pool.QueryRow(context.Background(), "SELECT balance FROM accounts WHERE id = $1", s.in[0].CreditAccountID).Scan(&balance); err != nil {
		t.Fatal(err)
	}
	if balance != want {
		t.Fatalf("balance %d, want %d", balance, want)
	}
}

// TestWriter_Backpressure: while the committer is stuck (another
// transaction holds an account's row lock), a full queue refuses new
// transfers at once with EOVERLOADED, and once the lock goes the queued
// work commits.
func TestWriter_Backpressure(t *testing.T) {
	t.Parallel()
	s := setupStuck(t, postgres.WriterConfig{MaxBatch: 1, QueueSize: 2, Committers: 1})
	first := s.submit(context.Background())
	waitFor(t, func() bool { return lockWaiters(t, s.db) == 1 })
	queued := []<-chan error{s.submit(context.Background()), s.submit(context.Background())}
	waitFor(t, func() bool { return s.transfers.QueueDepth() == 2 })

	// The queue is full: refused at once.
	if _, _, err := s.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: s.tenant, Transfers: s.in}); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("full queue: err = %v, want %s", err, holdfast.EOVERLOADED)
	}
	// Release the lock: everything queued commits.
	s.release()
	for _, done := range append(queued, first) {
		if err := <-done; err != nil {
			t.Fatalf("queued transfer: %v", err)
		}
	}
	s.assertCredited(t, 3)
	AssertLedgerConsistent(t, s.db, s.tenant)
}

// TestWriter_DeadlineWhileQueued: a caller whose deadline passes while its
// transfer waits behind a stuck batch gets its context's error.
func TestWriter_DeadlineWhileQueued(t *testing.T) {
	t.Parallel()
	s := setupStuck(t, postgres.WriterConfig{MaxBatch: 1, Committers: 1})
	first := s.submit(context.Background())
	waitFor(t, func() bool { return lockWaiters(t, s.db) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	queued := s.submit(ctx)
	waitFor(t, func() bool { return s.transfers.QueueDepth() == 1 })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gone while queued: err = %v, want context.Canceled", err)
	}
	s.release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	AssertLedgerConsistent(t, s.db, s.tenant)
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

// TestWriter_RefusesAfterStop: once stopped, the writer refuses at once
// instead of queueing work nobody will take.
func TestWriter_RefusesAfterStop(t *testing.T) {
	t.Parallel()
	s := setupStuck(t, postgres.WriterConfig{})
	s.release()
	if err := <-s.submit(context.Background()); err != nil {
		t.Fatalf("before Stop: %v", err)
	}
	s.transfers.Stop()
	if _, _, err := s.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: s.tenant, Transfers: s.in}); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("after Stop: err = %v, want %s", err, holdfast.EOVERLOADED)
	}
}

// TestWriter_ConflictAwareBatching: while one batch waits on an account's
// row lock, a second committer does not send a request for the same
// accounts to the database (it would only wait on the same lock: no second
// lock waiter), sets it aside, and meanwhile commits a transfer between
// other accounts; once the lock goes, the set-aside request commits too.
func TestWriter_ConflictAwareBatching(t *testing.T) {
	t.Parallel()
	s := setupStuck(t, postgres.WriterConfig{MaxBatch: 10, Committers: 2})
	first := s.submit(context.Background())
	waitFor(t, func() bool { return lockWaiters(t, s.db) == 1 })
	second := s.submit(context.Background())
	waitFor(t, func() bool { return s.transfers.QueueDepth() == 1 })

	c := MustAccount(t, s.db, s.tenant, "USD", true)
	d := MustAccount(t, s.db, s.tenant, "USD", true)
	other := []holdfast.TransferCreate{{DebitAccountID: c.ID, CreditAccountID: d.ID, Amount: 5, Currency: "USD"}}
	if _, _, err := s.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: s.tenant, Transfers: other}); err != nil {
		t.Fatalf("transfer between other accounts while a batch is stuck: %v", err)
	}
	if n := lockWaiters(t, s.db); n != 1 {
		t.Fatalf("%d backends wait for a row lock, want 1 (the stuck batch only)", n)
	}
	if n := s.transfers.QueueDepth(); n != 1 {
		t.Fatalf("queue depth %d, want 1 (the request set aside)", n)
	}

	s.release()
	for _, done := range []<-chan error{first, second} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s.assertCredited(t, 2)
	AssertLedgerConsistent(t, s.db, s.tenant)
}

// TestWriter_ShedsByQueueDelay: with MaxWait, once the writer has measured
// its throughput on full batches, it admits only as many waiting requests as
// it commits in MaxWait, but never fewer than one batch (here MaxBatch,
// MaxWait being a nanosecond: without the floor the depth would be 0);
// while its committer is stuck the next request is refused at once with
// EOVERLOADED instead of queueing up to QueueSize, and the admitted ones
// commit once the lock goes.
func TestWriter_ShedsByQueueDelay(t *testing.T) {
	t.Parallel()
	const admit = 3
	s := setupStuck(t, postgres.WriterConfig{MaxBatch: admit, Committers: 2, QueueSize: 100, MaxWait: time.Nanosecond, FullBatch: 1})
	if got := s.transfers.AdmitDepth(); got != 100 {
		t.Fatalf("admitted depth before any measurement %d, want the queue size 100", got)
	}
	// A backlog between other accounts measures the throughput.
	c := MustAccount(t, s.db, s.tenant, "USD", true)
	d := MustAccount(t, s.db, s.tenant, "USD", true)
	other := []holdfast.TransferCreate{{DebitAccountID: c.ID, CreditAccountID: d.ID, Amount: 1, Currency: "USD"}}
	for round := 0; s.transfers.AdmitDepth() != admit; round++ {
		if round == 50 {
			t.Fatalf("admitted depth %d after 50 backlogs, want %d", s.transfers.AdmitDepth(), admit)
		}
		errs := make(chan error, 20)
		for range 20 {
			go func() {
				_, _, err := s.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: s.tenant, Transfers: other})
				errs <- err
			}()
		}
		for range 20 {
			if err := <-errs; err != nil && !holdfast.IsCode(err, holdfast.EOVERLOADED) {
				t.Fatal(err)
			}
		}
	}

	first := s.submit(context.Background())
	waitFor(t, func() bool { return lockWaiters(t, s.db) == 1 })
	var queued []<-chan error
	for i := range admit {
		queued = append(queued, s.submit(context.Background()))
		waitFor(t, func() bool { return s.transfers.QueueDepth() == i+1 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := s.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: s.tenant, Transfers: s.in}); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("past the admitted depth: err = %v, want %s at once", err, holdfast.EOVERLOADED)
	}
	s.release()
	for _, done := range append(queued, first) {
		if err := <-done; err != nil {
			t.Fatalf("admitted transfer: %v", err)
		}
	}
	s.assertCredited(t, admit+1)
	AssertLedgerConsistent(t, s.db, s.tenant)
}

// TestWriter_FewWaitForTheYoungBatch: while a batch commits and fewer than
// OverlapDepth requests wait, no second batch starts before the first is
// OverlapAfter old; the waiting requests then go in one batch. Here the
// first batch is stuck on a row lock and OverlapAfter is an hour, so three
// transfers between other accounts stay queued until the lock goes, and
// then commit in one batch (two batches in all).
func TestWriter_FewWaitForTheYoungBatch(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := setupStuck(t, postgres.WriterConfig{Committers: 2, OverlapDepth: 4, OverlapAfter: time.Hour, Registerer: reg})
	first := s.submit(context.Background())
	waitFor(t, func() bool { return lockWaiters(t, s.db) == 1 })

	c := MustAccount(t, s.db, s.tenant, "USD", true)
	d := MustAccount(t, s.db, s.tenant, "USD", true)
	other := []holdfast.TransferCreate{{DebitAccountID: c.ID, CreditAccountID: d.ID, Amount: 5, Currency: "USD"}}
	done := make(chan error, 3)
	for range 3 {
		go func() {
			_, _, err := s.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: s.tenant, Transfers: other})
			done <- err
		}()
	}
	waitFor(t, func() bool { return s.transfers.QueueDepth() == 3 })
	s.release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, f := range families {
		if h := f.GetMetric()[0].GetHistogram(); h != nil {
			counts[f.GetName()] = h.GetSampleCount()
		}
	}
	if n, ok := counts["holdfast_ledger_batch_size"]; !ok || n != 2 {
		t.Errorf("%d batches (metric present: %v), want 2 (the stuck one, then the three that waited for it)", n, ok)
	}
	if n, ok := counts["holdfast_ledger_queue_wait_seconds"]; !ok || n != 4 {
		t.Errorf("%d queue waits (metric present: %v), want 4, one a request", n, ok)
	}
}

// Concurrent transfers in both directions between a hot account and
// customers who may not overdraw, through a writer whose batches pipeline:
// each is applied once, every refusal is right (a customer's balance never
// goes negative, the CHECK constraint would fail the batch), and the ledger
// is consistent entry by entry. Rounds go on until some batch was pipelined.
func TestWriter_PipelinesAHotAccount(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	reg := prometheus.NewRegistry()
	svc := MustTransfers(t, db, postgres.TransferConfig{GroupCommit: true,
		Writer: postgres.WriterConfig{MaxBatch: 16, QueueSize: 1000, Committers: 2, OverlapDepth: 1, Registerer: reg}})
	house := MustAccount(t, db, tenant, "USD", true)
	var customers []*holdfast.Account
	for range 8 {
		customers = append(customers, MustAccount(t, db, tenant, "USD", false))
	}
	move := func(from, to *holdfast.Account, amount int64) error {
		_, _, err := svc.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: tenant, Transfers: []holdfast.TransferCreate{
			{DebitAccountID: from.ID, CreditAccountID: to.ID, Amount: amount, Currency: "USD"}}})
		return err
	}
	for _, c := range customers {
		if err := move(house, c, 50); err != nil {
			t.Fatal(err)
		}
	}
	counter := func(name string) float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == name {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	var applied, refused atomic.Int64
	funding := counter("holdfast_ledger_pipelined_batches_total")
	for round := 0; round == 0 || round < 20 && counter("holdfast_ledger_pipelined_batches_total") == funding; round++ {
		var wg sync.WaitGroup
		for i := range 200 {
			c := customers[i%len(customers)]
			wg.Go(func() {
				from, to := c, house
				if i%3 == 0 {
					from, to = house, c
				}
				switch err := move(from, to, int64(1+i%20)); {
				case err == nil:
					applied.Add(1)
				case holdfast.IsCode(err, holdfast.EINSUFFICIENT):
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if counter("holdfast_ledger_pipelined_batches_total") == funding {
		t.Fatal("no batch was pipelined")
	}
	t.Logf("%d applied, %d refused; %.0f batches pipelined, %.0f ran again", applied.Load(), refused.Load(),
		counter("holdfast_ledger_pipelined_batches_total"), counter("holdfast_ledger_pipelined_stale_total"))
	var transfers int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE tenant_id = $1", tenant).Scan(&transfers); err != nil {
		t.Fatal(err)
	}
	if transfers != applied.Load()+int64(len(customers)) {
		t.Fatalf("%d transfers stored, want %d applied + %d funding", transfers, applied.Load(), len(customers))
	}
	AssertLedgerConsistent(t, db, tenant)
}

// TestTransferService_StartsAndStopsItsGroupCommit: a service configured
// for group commit owns its writer. Until Start each request commits
// alone; from Start on requests go through the writer's batches; once
// stopped, it refuses. Start and Stop are idempotent, Stop safe before
// Start, and both do nothing without group commit.
func TestTransferService_StartsAndStopsItsGroupCommit(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	reg := prometheus.NewRegistry()
	svc, err := postgres.NewTransferServiceWith(db, postgres.TransferConfig{GroupCommit: true, Writer: postgres.WriterConfig{Registerer: reg}})
	if err != nil {
		t.Fatal(err)
	}
	svc.Stop() // before Start: nothing to stop
	house := MustAccount(t, db, tenant, "USD", true)
	alice := MustAccount(t, db, tenant, "USD", false)
	move := func() error {
		_, _, err := svc.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: tenant, Transfers: []holdfast.TransferCreate{
			{DebitAccountID: house.ID, CreditAccountID: alice.ID, Amount: 1, Currency: "USD"}}})
		return err
	}
	batches := func() uint64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "holdfast_ledger_batch_size" {
				return f.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		return 0
	}

	if err := move(); err != nil || batches() != 0 {
		t.Fatalf("before Start: err %v, %d group-commit batches; want the request committed alone", err, batches())
	}
	for range 2 {
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := move(); err != nil || batches() != 1 {
		t.Fatalf("after Start: err %v, %d group-commit batches; want 1", err, batches())
	}
	svc.Stop()
	svc.Stop()
	if err := move(); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("after Stop: err = %v, want %s", err, holdfast.EOVERLOADED)
	}
	AssertLedgerConsistent(t, db, tenant)

	plain := postgres.NewTransferService(db)
	if err := plain.Start(context.Background()); err != nil || plain.QueueDepth() != 0 || plain.AdmitDepth() != 0 {
		t.Fatalf("without group commit: Start %v, depths %d/%d; want no-ops", err, plain.QueueDepth(), plain.AdmitDepth())
	}
	plain.Stop()
}
