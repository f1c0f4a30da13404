package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
)

// TransferService implements holdfast.TransferService.
//
// Every write goes through applyBatch, which applies a batch of requests in
// one transaction: it locks the idempotency keys, then the touched accounts,
// each in a fixed order (so concurrent batches, in this replica or another,
// can never deadlock), checks and applies each request in arrival order in
// memory, and writes all transfers, entries and balances with one statement
// each. A lone request is a batch of one; the group-commit Writer feeds it
// larger batches.
type TransferService struct {
	db     *DB
	writer *Writer // nil: each request commits its own batch of one
}

var _ holdfast.TransferService = (*TransferService)(nil)

// NewTransferService returns a TransferService on db that commits each
// request in its own transaction. See NewWriter for group commit.
func NewTransferService(db *DB) *TransferService { return &TransferService{db: db} }

// transferRequest is one call of CreateTransfers on its way through a batch.
type transferRequest struct {
	ctx      context.Context
	tenantID string
	in       []holdfast.TransferCreate
	linked   bool
	claim    *holdfast.IdempotencyClaim

	out    []*holdfast.Transfer // the result, once applied
	err    error                // a request's own failure; nil when applied
	resp   *holdfast.Response   // the idempotent response stored with the effects
	replay *holdfast.Response   // the earlier response of a completed key: nothing ran
	owner  bool                 // this request claimed its key in this batch
	done   chan struct{}        // closed when out/err are final (writer path)
	queued time.Time            // when the writer queued it
	state  atomic.Int32         // writer path: queued, then taken by a batch or abandoned by its caller
}

// The states of a request in the group-commit writer. It leaves queued once:
// a committer that takes it into a batch answers it with the batch's
// outcome; a caller whose context ends first abandons it and is refused,
// and no batch applies it. So a refusal always means nothing was done.
const (
	queued int32 = iota
	taken
	abandoned
)

// CreateTransfers validates and applies the transfers.
func (s *TransferService) CreateTransfers(ctx context.Context, tenantID string, in []holdfast.TransferCreate, linked bool) ([]*holdfast.Transfer, error) {
	if len(in) == 0 {
		return nil, holdfast.Errorf(holdfast.EINVALID, "no transfers given")
	}
	if !linked && len(in) != 1 {
		return nil, holdfast.Errorf(holdfast.EINVALID, "several transfers must be linked")
	}
	if len(in) > holdfast.MaxLinked {
		return nil, holdfast.Errorf(holdfast.EINVALID, "at most %d linked transfers", holdfast.MaxLinked)
	}
	in = slices.Clone(in) // canonicalized below; the caller's slice is theirs
	for i, t := range in {
		if err := t.Validate(); err != nil {
			if linked {
				return nil, indexed(err, i)
			}
			return nil, err
		}
		in[i].ID = holdfast.CanonicalID(t.ID)
		in[i].DebitAccountID = holdfast.CanonicalID(t.DebitAccountID)
		in[i].CreditAccountID = holdfast.CanonicalID(t.CreditAccountID)
	}
	r := &transferRequest{ctx: ctx, tenantID: tenantID, in: in, linked: linked, claim: holdfast.ClaimFromContext(ctx)}
	if s.writer != nil {
		return s.writer.submit(ctx, r)
	}
	if err := s.applyBatch(ctx, s.db.Pool, []*transferRequest{r}, nil); err != nil {
		return nil, err
	}
	return r.finish()
}

// finish returns the request's outcome and, on success, records its stored
// idempotent response on the claim.
func (r *transferRequest) finish() ([]*holdfast.Transfer, error) {
	if r.claim != nil {
		switch {
		case r.replay != nil:
			r.claim.SetReplayed(*r.replay)
		case r.resp != nil:
			r.claim.SetStored(*r.resp)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.out, nil
}

// indexed adds the index of the failing transfer to a validation error.
func indexed(err error, i int) error {
	var e *holdfast.Error
	if errors.As(err, &e) {
		ext := map[string]any{"index": i}
		return &holdfast.Error{Code: e.Code, Message: fmt.Sprintf("transfers[%d]: %s", i, e.Message), Extensions: ext}
	}
	return err
}

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
// table (7 ms a batch at 100,000 keys). Planning costs a fraction of a
// millisecond, shared by the batch's requests.
//
// Random reads are costed as what they are here, reads of cached or SSD
// pages (random_page_cost 1.1 instead of 4, the default set for spinning
// disks). At 4, a batch touching 160 of 10,000 accounts (143 pages) updated
// them by hashing a sequential scan of the whole table: 1.3 ms a batch, 18 µs
// an updated row against 5.8 by the primary key (pg_stat_statements, uniform
// open loop at 5,000/s; docs/benchmarks.md, session 8), and inside the
// batch's row locks. Set here, not on the server, so a server configured for
// spinning disks (or left at the default) plans these statements the same.
// TestBatchPlansUseIndexes checks the plans.
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
// inserted in key order) and commits. Locks on a hot
// account are held for one round trip and the commit, not for a chain of
// statements.
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
		r.out, r.err, r.resp, r.replay, r.owner = nil, nil, nil, nil, false
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

	// Round trip 1: lock and read.
	owned := make(map[accountKey]struct{}) // each account as named by a tenant
	var clientIDs, clientTenants []string
	for _, r := range reqs {
		for _, t := range r.in {
			owned[accountKey{r.tenantID, t.DebitAccountID}] = struct{}{}
			owned[accountKey{r.tenantID, t.CreditAccountID}] = struct{}{}
			if t.ID != "" {
				clientIDs = append(clientIDs, t.ID)
				clientTenants = append(clientTenants, r.tenantID)
			}
		}
	}
	var reads pgx.Batch
	reads.Queue("BEGIN")
	wake := s.db.relays.listening()
	notify := "on"
	if wake {
		notify = "off"
	}
	reads.Queue(batchSettingsSQL, notify)
	keys := queueClaimKeys(&reads, reqs)
	accountTenants, accountIDs := accountArrays(owned)
	accounts := queueReadAccounts(&reads, accountTenants, accountIDs, !pipelined)
	existing := queueFindExisting(&reads, clientTenants, clientIDs)
	if err := conn.SendBatch(ctx, &reads).Close(); err != nil {
		return err
	}

	keys.resolve(reqs)
	var expected map[string]holdfast.AccountState // what a pipelined batch applies against
	if pipelined {
		for id, before := range f.after {
			if a, v := accounts[id], before.final[id]; a != nil && v != nil {
				a.Balance, a.AllowOverdraft = v.Balance, v.AllowOverdraft
			}
		}
		expected = make(map[string]holdfast.AccountState, len(accounts))
		for id, a := range accounts {
			expected[id] = *a
		}
	}

	// Apply each request in arrival order, in memory.
	now := s.db.now()
	book := holdfast.Book{Accounts: accounts, Transfers: existing, Now: now, NewID: newTransferID}
	var transfers []*holdfast.Transfer
	var entries []holdfast.Entry
	var rejected []*transferRequest
	for _, r := range reqs {
		if r.err != nil || r.claim != nil && !r.owner {
			continue // refused, replayed, or a duplicate of a key another request of the batch holds
		}
		p, err := book.Post(r.tenantID, r.in, r.linked)
		if err != nil {
			r.err = err
			rejected = append(rejected, r)
			continue
		}
		r.out = p.Transfers
		transfers = append(transfers, p.Created...)
		entries = append(entries, p.Entries...)
	}
	events, err := transferEvents(transfers, rejected, now)
	if err != nil {
		return err
	}

	// Round trip 2: write and commit.
	var writes pgx.Batch
	queueInsertTransfers(&writes, transfers)
	if pipelined {
		queueOutbox(&writes, events)
		queueStoreResponses(&writes, reqs, keys)
		writes.Queue(lockAccountsSQL, accountTenants, accountIDs)
		queueExpect(&writes, expected).Exec(func(pgconn.CommandTag) error {
			f.ready(accounts) // locked, and applied against the balances they have
			return nil
		})
		queueUpdateBalances(&writes, accounts)
		queueInsertEntries(&writes, entries)
	} else {
		f.ready(accounts) // locked since round trip 1
		queueInsertEntries(&writes, entries)
		queueUpdateBalances(&writes, accounts)
		queueOutbox(&writes, events)
		queueStoreResponses(&writes, reqs, keys)
	}
	writes.Queue("COMMIT")
	presizeSend(conn.Conn(), &writes)
	wctx := ctx
	if f == nil {
		// Outside the writer ctx is the caller's. Once the writes are sent
		// the batch may commit, and its outcome, not the caller's deadline,
		// is the answer: they run to the end, within commitTimeout. (The
		// writer's batches run under their own timeout already.)
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
	}
	if err := conn.SendBatch(wctx, &writes).Close(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && (pe.ConstraintName == "transfers_pkey" || pe.ConstraintName == "idempotency_keys_pkey") {
			return errRaced
		}
		if inDoubt(err) {
			return &sentError{pid: conn.Conn().PgConn().PID(), created: transfers, err: err}
		}
		return err
	}
	if wake && len(events) > 0 {
		s.db.relays.wake()
	}
	return nil
}

// transferEvents returns the outbox rows of a batch: one transfer.posted
// per transfer created and one transfer.rejected per request the ledger
// refused, packed into one row per tenant and type (see packer).
func transferEvents(posted []*holdfast.Transfer, rejected []*transferRequest, now time.Time) ([]outboxEvent, error) {
	p := newPacker(now)
	for _, t := range posted {
		if err := p.add(t.TenantID, holdfast.EventTransferPosted, t); err != nil {
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

type keyID struct{ tenant, key string }

// batchKeys is what the batch learnt of its requests' Idempotency-Keys.
type batchKeys struct {
	rows   map[keyID]*holdfast.Response // the key's row, if it exists; Status 0 while unanswered
	prints map[keyID][]byte             // the stored fingerprint of each existing key
	first  map[keyID]*transferRequest   // the first request of the batch with each key
}

// queueClaimKeys reads the rows of the requests' Idempotency-Keys. A key
// with no row is this batch's to claim: the first request with it runs, and
// queueStoreResponses inserts the key with its response, beside the effects.
// If a concurrent batch inserts the same key first, that insert violates the
// primary key, this batch rolls back and runs again, and then sees the key.
func queueClaimKeys(b *pgx.Batch, reqs []*transferRequest) *batchKeys {
	k := &batchKeys{rows: map[keyID]*holdfast.Response{}, prints: map[keyID][]byte{}, first: map[keyID]*transferRequest{}}
	var tenants, names []string
	for _, r := range reqs {
		if r.claim == nil {
			continue
		}
		id := keyID{r.claim.TenantID, r.claim.Key}
		if k.first[id] == nil {
			k.first[id] = r
			tenants, names = append(tenants, id.tenant), append(names, id.key)
		}
	}
	if len(names) == 0 {
		return k
	}
	b.Queue(`SELECT i.tenant_id, i.key, i.fingerprint, coalesce(i.response_status, 0), coalesce(i.response_type, ''), i.response_body
		FROM idempotency_keys i JOIN unnest($1::uuid[], $2::text[]) AS x(tenant_id, key) USING (tenant_id, key)`,
		UUIDArray(tenants), TextArray(names)).Query(func(rows pgx.Rows) error {
		var t, key string
		var fp []byte
		var resp holdfast.Response
		_, err := pgx.ForEachRow(rows, []any{&t, &key, &fp, &resp.Status, &resp.ContentType, &resp.Body}, func() error {
			id := keyID{t, key}
			stored := resp
			k.rows[id], k.prints[id] = &stored, fp
			return nil
		})
		return err
	})
	return k
}

// resolve decides, for each request with a key, whether it runs (the first
// request of the batch with a key this batch claimed), replays an earlier
// response, or is refused: EIDEMPOTENCYREUSED for another request under the
// same key, EIDEMPOTENCYINUSE while the key's first request is still running.
// A later request of the batch with the key of a running one is settled in
// queueStoreResponses, once that one's outcome is known.
func (k *batchKeys) resolve(reqs []*transferRequest) {
	for _, r := range reqs {
		if r.claim == nil {
			continue
		}
		id := keyID{r.claim.TenantID, r.claim.Key}
		first := k.first[id]
		row := k.rows[id]
		switch {
		case row == nil && first == r:
			r.owner = true
		case row == nil && !bytes.Equal(first.claim.Fingerprint, r.claim.Fingerprint),
			row != nil && !bytes.Equal(k.prints[id], r.claim.Fingerprint):
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYREUSED,
				"this Idempotency-Key was already used with a different request; use a new key for a new request")
		case row == nil:
			// A duplicate within the batch: answered with the owner's outcome.
		case row.Status != 0:
			r.replay = row
		default:
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "a request with this Idempotency-Key is still in progress; retry later")
		}
	}
}

// accountKey is an account id as a tenant's request names it.
type accountKey struct{ tenant, id string }

// accountArrays returns the tenants and ids of the accounts, pairwise.
func accountArrays(owned map[accountKey]struct{}) (tenants, ids UUIDArray) {
	tenants, ids = make(UUIDArray, 0, len(owned)), make(UUIDArray, 0, len(owned))
	for k := range owned {
		tenants, ids = append(tenants, k.tenant), append(ids, k.id)
	}
	return tenants, ids
}

// queueReadAccounts reads the accounts (tenants[i], ids[i]) into the
// returned map by id (filled when the batch runs), locking them in id order
// if lock. An id named by a tenant that does not own it reads nothing and
// locks nothing: the request naming it fails with ENOTFOUND.
func queueReadAccounts(b *pgx.Batch, tenants, ids UUIDArray, lock bool) map[string]*holdfast.AccountState {
	accounts := make(map[string]*holdfast.AccountState, len(ids))
	sql := readAccountsSQL
	if lock {
		sql = lockAccountsSQL
	}
	b.Queue(sql, tenants, ids).Query(func(rows pgx.Rows) error {
		var id string
		var a holdfast.AccountState
		_, err := pgx.ForEachRow(rows, []any{&id, &a.TenantID, &a.Currency, &a.AllowOverdraft, &a.Balance}, func() error {
			acct := a
			accounts[id] = &acct
			return nil
		})
		return err
	})
	return accounts
}

// lockAccountsSQL reads the accounts ($1[i], $2[i]) (tenant, id) and locks
// them in id order; readAccountsSQL only reads them. The tenant is part of
// the key, so a request naming another tenant's account id can neither lock
// nor read that row.
const (
	lockAccountsSQL = readAccountsSQL + ` ORDER BY a.id FOR UPDATE OF a`
	readAccountsSQL = `SELECT a.id, a.tenant_id, a.currency, a.allow_overdraft, a.balance FROM accounts a
	JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id) ON a.id = k.id AND a.tenant_id = k.tenant_id`
)

// queueExpect fails the transaction with a serialization failure unless
// every account has the balance and overdraft permission a pipelined batch
// applied against (ledger_expect, migration 0007).
func queueExpect(b *pgx.Batch, want map[string]holdfast.AccountState) *pgx.QueuedQuery {
	n := len(want)
	ids, balances, overdraft := make([]string, 0, n), make([]int64, 0, n), make([]bool, 0, n)
	for id, a := range want {
		ids, balances, overdraft = append(ids, id), append(balances, a.Balance), append(overdraft, a.AllowOverdraft)
	}
	return b.Queue(`SELECT ledger_expect(count(*) = $4) FROM accounts a
		JOIN unnest($1::uuid[], $2::bigint[], $3::bool[]) AS v(id, balance, overdraft)
			ON a.id = v.id AND a.balance = v.balance AND a.allow_overdraft = v.overdraft`, UUIDArray(ids), Int8Array(balances), BoolArray(overdraft), n)
}

// queueFindExisting reads the transfers that already have one of the given
// ids into the returned map (filled when the batch runs).
func queueFindExisting(b *pgx.Batch, tenants, ids []string) map[holdfast.TransferKey]*holdfast.Transfer {
	existing := make(map[holdfast.TransferKey]*holdfast.Transfer)
	if len(ids) == 0 {
		return existing
	}
	b.Queue("SELECT "+transferColumns+` FROM transfers t
		JOIN unnest($1::uuid[], $2::uuid[]) AS c(tenant_id, id) USING (tenant_id, id)`, UUIDArray(tenants), UUIDArray(ids)).Query(func(rows pgx.Rows) error {
		list, err := pgx.CollectRows(rows, scanTransfer)
		for _, t := range list {
			existing[holdfast.TransferKey{TenantID: t.TenantID, ID: t.ID}] = t
		}
		return err
	})
	return existing
}

// newTransferID returns the id of a transfer whose client gave none: a
// UUIDv7, so that ids sort by creation time.
func newTransferID() string { return uuid.Must(uuid.NewV7()).String() }

// queueInsertTransfers inserts the new transfers. A client-supplied id that
// a concurrent batch inserted first violates the primary key, which fails
// the batch; it then runs again and sees the transfer as existing.
func queueInsertTransfers(b *pgx.Batch, ts []*holdfast.Transfer) {
	if len(ts) == 0 {
		return
	}
	n := len(ts)
	tenant, id, debit, credit := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amount, currency, desc, at := make([]int64, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i, t := range ts {
		tenant[i], id[i], debit[i], credit[i] = t.TenantID, t.ID, t.DebitAccountID, t.CreditAccountID
		amount[i], currency[i], desc[i], at[i] = t.Amount, t.Currency, t.Description, t.CreatedAt
	}
	b.Queue(`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::timestamptz[])`,
		UUIDArray(tenant), UUIDArray(id), UUIDArray(debit), UUIDArray(credit), Int8Array(amount), TextArray(currency), TextArray(desc), TimestamptzArray(at))
}

func queueInsertEntries(b *pgx.Batch, es []holdfast.Entry) {
	if len(es) == 0 {
		return
	}
	n := len(es)
	acct, tr, amount, after, at := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i, e := range es {
		acct[i], tr[i], amount[i], after[i], at[i] = e.AccountID, e.TransferID, e.Amount, e.BalanceAfter, e.CreatedAt
	}
	b.Queue(`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::timestamptz[])`,
		UUIDArray(acct), UUIDArray(tr), Int8Array(amount), Int8Array(after), TimestamptzArray(at))
}

func queueUpdateBalances(b *pgx.Batch, accounts map[string]*holdfast.AccountState) {
	var ids []string
	var balances []int64
	for id, a := range accounts {
		if a.Changed {
			ids = append(ids, id)
			balances = append(balances, a.Balance)
		}
	}
	if len(ids) == 0 {
		return
	}
	b.Queue(updateBalancesSQL, UUIDArray(ids), Int8Array(balances))
}

// updateBalancesSQL sets the balance of each account $1[i] to $2[i].
const updateBalancesSQL = `UPDATE accounts a SET balance = v.balance
	FROM unnest($1::uuid[], $2::bigint[]) AS v(id, balance) WHERE a.id = v.id`

// queueStoreResponses renders the outcome of each request that claimed its
// key in this batch and inserts the key with it, in (tenant, key) order,
// beside the batch's effects: a success or a final client error is kept for
// replay; any other outcome leaves the key unused. A duplicate of a claimed
// key within the batch gets the same response as a replay.
func queueStoreResponses(b *pgx.Batch, reqs []*transferRequest, keys *batchKeys) {
	var owners []*transferRequest
	for _, r := range reqs {
		if !r.owner || r.claim.Render == nil {
			continue
		}
		var result any
		if r.err == nil {
			result = r.out
		}
		if resp, store := r.claim.Render(result, r.err); store {
			r.resp = &resp
			owners = append(owners, r)
		}
	}
	for _, r := range reqs {
		if r.claim == nil || r.owner || r.err != nil || r.replay != nil {
			continue
		}
		if owner := keys.first[keyID{r.claim.TenantID, r.claim.Key}]; owner != nil && owner.resp != nil {
			r.replay = owner.resp
		} else {
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "a request with this Idempotency-Key is still in progress; retry later")
		}
	}
	if len(owners) == 0 {
		return
	}
	// Sorted, so two batches inserting overlapping keys wait on each other in
	// one order and never deadlock.
	sort.Slice(owners, func(i, j int) bool {
		a, b := owners[i].claim, owners[j].claim
		return a.TenantID < b.TenantID || a.TenantID == b.TenantID && a.Key < b.Key
	})
	n := len(owners)
	tenants, names, types := make([]string, n), make([]string, n), make([]string, n)
	fps, bodies, statuses := make([][]byte, n), make([][]byte, n), make([]int32, n)
	for i, r := range owners {
		tenants[i], names[i], fps[i] = r.claim.TenantID, r.claim.Key, r.claim.Fingerprint
		statuses[i], types[i], bodies[i] = int32(r.resp.Status), r.resp.ContentType, r.resp.Body
	}
	b.Queue(`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
		SELECT t, k, f, now(), s, ty, bo FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::text[], $6::bytea[])
			WITH ORDINALITY AS x(t, k, f, s, ty, bo, o) ORDER BY o`,
		UUIDArray(tenants), TextArray(names), ByteaArray(fps), Int4Array(statuses), TextArray(types), ByteaArray(bodies))
}

const transferColumns = "t.tenant_id, t.id, t.debit_account_id, t.credit_account_id, t.amount, t.currency, t.description, t.created_at"

func scanTransfer(r pgx.CollectableRow) (*holdfast.Transfer, error) {
	var t holdfast.Transfer
	err := r.Scan(&t.TenantID, &t.ID, &t.DebitAccountID, &t.CreditAccountID, &t.Amount, &t.Currency, &t.Description, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return &t, err
}

// FindTransfer reads a transfer from a snapshot.
func (s *TransferService) FindTransfer(ctx context.Context, tenantID, id string) (*holdfast.Transfer, error) {
	if holdfast.ValidID("transfer id", id) != nil {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "transfer not found")
	}
	rows, _ := s.db.Pool.Query(ctx, "SELECT "+transferColumns+" FROM transfers t WHERE t.tenant_id = $1 AND t.id = $2",
		tenantID, holdfast.CanonicalID(id))
	t, err := pgx.CollectExactlyOneRow(rows, scanTransfer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "transfer not found")
	}
	if err != nil {
		return nil, fmt.Errorf("find transfer: %w", contextError(ctx, err))
	}
	return t, nil
}

// ListTransfers lists the transfers touching an account, newest first, from
// a snapshot. The cursor is the entry id of the last transfer returned.
func (s *TransferService) ListTransfers(ctx context.Context, tenantID, accountID string, page holdfast.Page) ([]*holdfast.Transfer, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	before := int64(math.MaxInt64)
	if page.Cursor != "" {
		if _, err := fmt.Sscanf(page.Cursor, "%d", &before); err != nil || before <= 0 || fmt.Sprint(before) != page.Cursor {
			return nil, "", holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
	}
	if holdfast.ValidID("account id", accountID) != nil {
		return nil, "", holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	accountID = holdfast.CanonicalID(accountID)
	// One snapshot for the ownership check and the page.
	tx, err := s.db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, "", fmt.Errorf("list transfers: %w", contextError(ctx, err))
	}
	defer tx.Rollback(ctx)
	var owned bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2)", tenantID, accountID).Scan(&owned); err != nil {
		return nil, "", fmt.Errorf("list transfers: %w", contextError(ctx, err))
	}
	if !owned {
		return nil, "", holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	rows, _ := tx.Query(ctx, "SELECT e.id, "+transferColumns+` FROM entries e
		JOIN transfers t ON t.tenant_id = $1 AND t.id = e.transfer_id
		WHERE e.account_id = $2 AND e.id < $3 ORDER BY e.id DESC LIMIT $4`, tenantID, accountID, before, page.Limit+1)
	var cursors []int64
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.Transfer, error) {
		var t holdfast.Transfer
		var eid int64
		err := r.Scan(&eid, &t.TenantID, &t.ID, &t.DebitAccountID, &t.CreditAccountID, &t.Amount, &t.Currency, &t.Description, &t.CreatedAt)
		t.CreatedAt = t.CreatedAt.UTC()
		cursors = append(cursors, eid)
		return &t, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list transfers: %w", contextError(ctx, err))
	}
	next := ""
	if len(list) > page.Limit {
		list = list[:page.Limit]
		next = fmt.Sprint(cursors[page.Limit-1])
	}
	return list, next, nil
}
