package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
)

// errRaced means a concurrent batch inserted a transfer id or an
// Idempotency-Key this batch had seen as new; the batch runs again and then
// sees it.
var errRaced = errors.New("transfer id or idempotency key inserted concurrently")

// applyBatch applies reqs in one transaction, retrying it on deadlock,
// serialization failure (which includes a pipelined batch finding balances
// other than those it applied against) or a raced id. Each request's own
// outcome is left in its out/err; the returned error means the whole batch
// failed and no request was applied. f is the batch's flight in the
// group-commit writer (nil outside it): its first attempt is pipelined if
// it took accounts from a batch still committing.
func (s *TransferService) applyBatch(ctx context.Context, pool *pgxpool.Pool, reqs []*transferRequest, f *flight) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		pipelined := attempt == 0 && f.pipelines()
		err = s.tryBatch(ctx, pool, reqs, f, pipelined)
		var sent *sentError
		if errors.As(err, &sent) {
			err = s.settle(pool, sent)
			break
		}
		if pipelined && isStale(err) {
			f.stale = true
		}
		if err == nil || !(retryable(err) || errors.Is(err, errRaced)) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("apply transfers: %w", contextError(ctx, err))
	}
	return nil
}

// sentError is a batch whose writes and COMMIT were sent and whose
// connection then failed without the server's answer: it may have
// committed.
type sentError struct {
	pid     uint32               // the backend that ran the batch
	created []*holdfast.Transfer // the transfers it was to create
	err     error
}

func (e *sentError) Error() string { return "connection lost while committing: " + e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// settle learns whether a batch whose connection failed after its COMMIT
// was sent committed. It ends the batch's backend from another connection
// (a transaction that has not committed then rolls back; one committing
// finishes first) and, once the backend is gone, looks for a transfer the
// batch created. It returns nil if the batch committed (each request's own
// outcome stands), the connection's error if it did not (nothing was
// done), and EOUTCOMEUNKNOWN if it cannot tell (the database is away). A
// batch that created no transfer moved no money whichever way it ended, so
// its requests keep their own outcomes.
func (s *TransferService) settle(pool *pgxpool.Pool, sent *sentError) error {
	if len(sent.created) == 0 {
		return nil
	}
	unknown := func(err error) error {
		return &holdfast.Error{Code: holdfast.EOUTCOMEUNKNOWN, Message: errOutcomeUnknown.Message, Err: errors.Join(sent.err, err)}
	}
	ctx, cancel := context.WithTimeout(Patient(context.Background()), commitTimeout)
	defer cancel()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return unknown(err)
	}
	defer conn.Release()
	var gone, committed bool
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", int64(sent.pid)); err != nil {
		return unknown(err)
	}
	// A statement of its own, so that the next one's snapshot is taken
	// after the backend, and so its transaction, ended.
	if err := conn.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int64(sent.pid)).Scan(&gone); err != nil {
		return unknown(err)
	}
	if !gone {
		return unknown(errors.New("the batch's backend did not end"))
	}
	t := sent.created[0]
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM transfers WHERE tenant_id = $1 AND id = $2)", t.TenantID, t.ID).Scan(&committed); err != nil {
		return unknown(err)
	}
	if committed {
		return nil
	}
	return sent.err
}

// batchSettingsSQL sets how a batch's statements are planned, for its
// transaction only.
//
// Each is planned for its actual arguments (plan_cache_mode). A generic plan,
// which pgx's prepared statements get after five runs, is made once for the
// table as it was then: one made while idempotency_keys was small joined the
// keys by hashing a sequential scan, and every batch then read the whole
// table. Planning costs a fraction of a millisecond, shared by the batch's
// requests.
//
// Random reads are costed as what they are here, reads of cached or SSD
// pages (random_page_cost 1.1 instead of 4, the default set for spinning
// disks): at 4, a batch updated its accounts by hashing a sequential scan of
// the whole table, inside the batch's row locks. Set here, not on the
// server, so a server configured for spinning disks (or left at the
// default) plans these statements the same. TestBatchPlansUseIndexes checks
// the plans; the measurements are in
// docs/decisions/0007-batch-plans-custom-with-random-page-cost-1-1.md.
//
// $1 is 'off' when the batch's outbox rows are not to notify: a relay of this
// process listens and is woken once the batch commits (see wakeSet).
const batchSettingsSQL = `SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
	set_config('random_page_cost', '1.1', true), set_config('holdfast.outbox_notify', $1, true)`

// isStale reports whether err is ledger_expect's: a pipelined batch found
// balances other than those it applied against. A serialization failure
// has no other source in a READ COMMITTED transaction.
func isStale(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40001"
}

// tryBatch applies reqs in one transaction of two round trips: the first
// begins, reads the requests' Idempotency-Keys, locks the touched accounts
// in id order and reads transfers that exist under client-supplied ids; the
// requests are then checked and applied in memory, in arrival order; the
// second round trip writes everything with one statement per table (keys
// inserted in key order) and commits. Locks on a hot account are held for
// one round trip and the commit, not for a chain of statements.
//
// Pipelined (see flight), the first round trip reads the accounts without
// locking them and the batch applies its requests against the balances the
// batches before it will commit; the second writes the transfers, events
// and keys, then locks the accounts in id order (waiting for those batches
// to commit), checks that their balances are the ones it applied against
// (ledger_expect: a serialization failure if not), and only then updates
// the balances and inserts the entries, so each account's entries keep the
// order of its balances. The locks are held for those last statements and
// the commit.
func (s *TransferService) tryBatch(ctx context.Context, pool *pgxpool.Pool, reqs []*transferRequest, f *flight, pipelined bool) (err error) {
	for _, r := range reqs {
		r.out, r.err, r.stored, r.replay, r.owner = nil, nil, nil, nil, false
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()

	a := &attempt{reqs: reqs, f: f, pipelined: pipelined, wake: s.db.relays.listening()}
	var reads pgx.Batch
	a.queueReads(&reads)
	if err := conn.SendBatch(ctx, &reads).Close(); err != nil {
		return err
	}
	if err := a.apply(s.db.now()); err != nil {
		return err
	}
	var writes pgx.Batch
	a.queueWrites(&writes)
	if err := a.send(ctx, conn.Conn(), &writes); err != nil {
		return err
	}
	s.holds.add(a.transfers) // committed: their resolutions need not read them back
	if a.wake && len(a.events) > 0 {
		s.db.relays.wake()
	}
	return nil
}

// attempt is one try of a batch's transaction: what its first round trip
// reads, and what applying its requests in memory makes for the second to
// write.
type attempt struct {
	reqs      []*transferRequest
	f         *flight // the batch's flight in the group-commit writer; nil outside it
	pipelined bool
	wake      bool // a relay of this process listens: woken after the commit, not notified

	// Read in round trip 1.
	keys                       *batchKeys
	accountTenants, accountIDs UUIDArray
	accounts                   map[string]*holdfast.AccountState
	existing                   map[holdfast.TransferKey]*holdfast.Transfer

	// Made by apply, written in round trip 2.
	expected  map[string]holdfast.AccountState // the balances a pipelined batch applied against
	transfers []*holdfast.Transfer
	entries   []holdfast.Entry
	resolved  []*holdfast.Transfer // holds posted, voided or expired, with their new status
	events    []outboxEvent
	stored    storedKeys // the keys claimed, with their outcomes
}

// queueReads queues round trip 1: begin, set the batch's planner settings,
// read the Idempotency-Keys, read (and unless pipelined lock) the accounts,
// and read the transfers that exist under the client-supplied ids.
func (a *attempt) queueReads(b *pgx.Batch) {
	owned := make(map[accountKey]struct{}) // each account as named by a tenant
	var clientIDs, clientTenants []string
	for _, r := range a.reqs {
		for _, t := range r.in {
			owned[accountKey{r.tenantID, t.DebitAccountID}] = struct{}{}
			owned[accountKey{r.tenantID, t.CreditAccountID}] = struct{}{}
			if t.ID != "" {
				clientIDs = append(clientIDs, t.ID)
				clientTenants = append(clientTenants, r.tenantID)
			}
			if t.PendingID != "" { // the hold it resolves, read after the accounts are locked
				clientIDs = append(clientIDs, t.PendingID)
				clientTenants = append(clientTenants, r.tenantID)
			}
		}
	}
	b.Queue("BEGIN")
	notify := "on"
	if a.wake {
		notify = "off"
	}
	b.Queue(batchSettingsSQL, notify)
	a.keys = queueClaimKeys(b, a.reqs)
	a.accountTenants, a.accountIDs = accountArrays(owned)
	a.accounts = queueReadAccounts(b, a.accountTenants, a.accountIDs, !a.pipelined)
	a.existing = queueFindExisting(b, clientTenants, clientIDs)
}

// apply settles each request's Idempotency-Key and applies the requests
// that run, in arrival order, to what round trip 1 read: a request the
// ledger refuses keeps its error and becomes a transfer.rejected event; the
// outcomes of the keys claimed are encoded for storing.
// Pipelined, the accounts a batch still committing holds are taken at the
// balances it will commit.
func (a *attempt) apply(now time.Time) error {
	a.keys.resolve(a.reqs)
	if a.pipelined {
		for id, before := range a.f.after {
			if acct, v := a.accounts[id], before.final[id]; acct != nil && v != nil {
				acct.Balance, acct.AllowOverdraft = v.Balance, v.AllowOverdraft
				acct.PendingDebits, acct.PendingCredits = v.PendingDebits, v.PendingCredits
			}
		}
		a.expected = make(map[string]holdfast.AccountState, len(a.accounts))
		for id, acct := range a.accounts {
			a.expected[id] = *acct
		}
	}
	book := holdfast.Book{Accounts: a.accounts, Transfers: a.existing, Now: now, NewID: newTransferID}
	n := 0
	for _, r := range a.reqs {
		n += len(r.in)
	}
	a.transfers, a.entries = make([]*holdfast.Transfer, 0, n), make([]holdfast.Entry, 0, 2*n)
	var rejected []*transferRequest
	for _, r := range a.reqs {
		if r.err != nil || r.claim != nil && !r.owner {
			continue // refused, replayed, or a duplicate of a key another request of the batch holds
		}
		p, err := book.Post(r.tenantID, r.in, r.linked)
		if err != nil {
			r.err = err
			if !r.quiet {
				rejected = append(rejected, r)
			}
			continue
		}
		r.out = p.Transfers
		a.transfers = append(a.transfers, p.Created...)
		a.entries = append(a.entries, p.Entries...)
		a.resolved = append(a.resolved, p.Resolved...)
	}
	var err error
	if a.stored, err = storeOutcomes(a.reqs, a.keys); err != nil {
		return err
	}
	a.events, err = transferEvents(a.transfers, rejected, now)
	return err
}

// queueWrites queues round trip 2: the transfers, entries, balances,
// events and keys, then COMMIT. Pipelined, the accounts are locked and
// their balances checked after everything else is written (see tryBatch);
// otherwise they are locked already, and the batch is ready at once.
func (a *attempt) queueWrites(b *pgx.Batch) {
	queueInsertTransfers(b, a.transfers)
	if a.pipelined {
		queueOutbox(b, a.events)
		queueStoreOutcomes(b, a.stored)
		b.Queue(lockAccountsSQL, a.accountTenants, a.accountIDs)
		queueExpect(b, a.expected).Exec(func(pgconn.CommandTag) error {
			a.f.ready(a.accounts) // locked, and applied against the balances they have
			return nil
		})
		queueResolveHolds(b, a.resolved) // after the account locks, as every batch takes them
		queueUpdateBalances(b, a.accounts)
		queueInsertEntries(b, a.entries)
	} else {
		a.f.ready(a.accounts) // locked since round trip 1
		queueResolveHolds(b, a.resolved)
		queueInsertEntries(b, a.entries)
		queueUpdateBalances(b, a.accounts)
		queueOutbox(b, a.events)
		queueStoreOutcomes(b, a.stored)
	}
	b.Queue("COMMIT")
}

// send sends round trip 2. A transfer id or key a concurrent batch inserted
// first is errRaced; a connection lost once COMMIT may have reached the
// server is a sentError, for settle.
func (a *attempt) send(ctx context.Context, conn *pgx.Conn, writes *pgx.Batch) error {
	presizeSend(conn, writes)
	if a.f == nil {
		// Outside the writer ctx is the caller's. Once the writes are sent
		// the batch may commit, and its outcome, not the caller's deadline,
		// is the answer: they run to the end, within commitTimeout. (The
		// writer's batches run under their own timeout already.)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
	}
	err := conn.SendBatch(ctx, writes).Close()
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && (pe.ConstraintName == "transfers_pkey" || isKeyPartitionPkey(pe.ConstraintName) || pe.ConstraintName == "transfers_resolves") {
		return errRaced
	}
	if inDoubt(err) {
		return &sentError{pid: conn.PgConn().PID(), created: a.transfers, err: err}
	}
	return err
}

// transferEvents returns the outbox rows of a batch: one per transfer
// created (transfer.posted, or for a hold transfer.pending, and for its
// resolution transfer.posted, transfer.voided or transfer.expired) and one
// transfer.rejected per request the ledger refused, packed into one row per
// tenant and type (see packer).
func transferEvents(created []*holdfast.Transfer, rejected []*transferRequest, now time.Time) ([]outboxEvent, error) {
	p := newPacker(now)
	for _, t := range created {
		if err := p.add(t.TenantID, holdfast.TransferEventType(t), t); err != nil {
			return nil, err
		}
	}
	for _, r := range rejected {
		err := p.add(r.tenantID, holdfast.EventTransferRejected, rejection{
			Code: holdfast.ErrorCode(r.err), Detail: holdfast.ErrorMessage(r.err), Linked: r.linked, Transfers: r.in,
		})
		if err != nil {
			return nil, err
		}
	}
	return p.done(), nil
}

// rejection is the data of a transfer.rejected event.
type rejection struct {
	Code      string                    `json:"code"`
	Detail    string                    `json:"detail"`
	Linked    bool                      `json:"linked"`
	Transfers []holdfast.TransferCreate `json:"transfers"`
}
