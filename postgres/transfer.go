package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// TransferConfig configures a TransferService.
type TransferConfig struct {
	// GroupCommit applies concurrent requests together, many to a
	// transaction, once Start has run (see WriterConfig). Default false:
	// each request commits its own transaction.
	GroupCommit bool
	// Writer configures group commit; its zero fields take WriterConfig's
	// defaults. Unused without GroupCommit.
	Writer WriterConfig
}

// TransferService implements holdfast.TransferService.
//
// Every write goes through applyBatch, which applies a batch of requests in
// one transaction: it locks the idempotency keys, then the touched accounts,
// each in a fixed order (so concurrent batches, in this replica or another,
// can never deadlock), applies each request in arrival order in memory
// (holdfast.Book), and writes all transfers, entries and balances with one
// statement each. A lone request is a batch of one; with group commit the
// service's writer feeds it larger batches.
type TransferService struct {
	db      *DB
	writer  *writer     // nil without group commit
	grouped atomic.Bool // the writer has started: every request goes through it
	holds   holdCache   // the holds this service made, for their resolutions
}

var _ holdfast.TransferService = (*TransferService)(nil)

// NewTransferService returns a TransferService on db that commits each
// request in its own transaction.
func NewTransferService(db *DB) *TransferService { return &TransferService{db: db} }

// NewTransferServiceWith returns a TransferService on db configured by cfg,
// or an error for an invalid WriterConfig. With group commit, Start starts
// it and Stop stops it; until Start each request commits alone.
func NewTransferServiceWith(db *DB, cfg TransferConfig) (*TransferService, error) {
	s := &TransferService{db: db}
	if cfg.GroupCommit {
		w, err := newWriter(s, cfg.Writer)
		if err != nil {
			return nil, err
		}
		s.writer = w
	}
	return s, nil
}

// Start starts group commit, if the service has it: its committers run in
// the background on connections of their own, and from then on every
// CreateTransfers call waits for a batch. Without group commit it does
// nothing. Starting twice is a no-op. It fails if the committers' pool
// cannot be made.
func (s *TransferService) Start(ctx context.Context) error {
	if s.writer == nil {
		return nil
	}
	if err := s.writer.start(ctx); err != nil {
		return err
	}
	s.grouped.Store(true)
	return nil
}

// Stop stops group commit: the batches being committed finish, requests
// still queued are refused with EOVERLOADED, and so is every later
// CreateTransfers call. Idempotent; safe before Start and without group
// commit.
func (s *TransferService) Stop() {
	if s.writer != nil {
		s.writer.stop()
	}
}

// QueueDepth returns how many requests wait for a group-commit batch; 0
// without group commit.
func (s *TransferService) QueueDepth() int {
	if s.writer == nil {
		return 0
	}
	return s.writer.queueDepth()
}

// AdmitDepth returns how many requests may wait for group commit before
// new ones are refused (see WriterConfig.MaxWait); 0 without group commit.
func (s *TransferService) AdmitDepth() int {
	if s.writer == nil {
		return 0
	}
	return s.writer.admitted()
}

// LedgerStats counts what group commit has done since the service started:
// the figures of its holdfast_ledger_* metrics, for reports.
type LedgerStats struct {
	Batches          int64   // batches applied (or failed)
	Requests         int64   // the requests in them
	BatchSeconds     float64 // their time to apply and commit, summed
	QueueWaitSeconds float64 // the time their requests waited for them, summed
	Shed             int64   // requests refused at once: the queue full, or its delay too long
}

// Stats returns group commit's counts; zero without group commit.
func (s *TransferService) Stats() LedgerStats {
	if s.writer == nil {
		return LedgerStats{}
	}
	return s.writer.stats()
}

// transferRequest is one call of CreateTransfers on its way through a batch.
type transferRequest struct {
	ctx      context.Context
	tenantID string
	in       []holdfast.TransferCreate
	linked   bool
	claim    *holdfast.IdempotencyClaim
	quiet    bool // a refusal is no event: the sweeper's expiry of a hold resolved meanwhile

	out    []*holdfast.Transfer // the result, once applied
	err    error                // a request's own failure; nil when applied
	stored []byte               // the outcome stored with the effects (JSON), under the key this request claimed
	replay *holdfast.Outcome    // the earlier outcome of a completed key: nothing ran
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

// CreateTransfers validates and applies the request's transfers, and with
// an Idempotency-Key claims it and stores their outcome in the same
// transaction.
func (s *TransferService) CreateTransfers(ctx context.Context, req holdfast.TransferRequest) ([]*holdfast.Transfer, *holdfast.Outcome, error) {
	in, linked := req.Transfers, req.Linked
	if len(in) == 0 {
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "no transfers given")
	}
	if !linked && len(in) != 1 {
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "several transfers must be linked")
	}
	if len(in) > holdfast.MaxLinked {
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "at most %d linked transfers", holdfast.MaxLinked)
	}
	in = slices.Clone(in) // canonicalized below; the caller's slice is theirs
	for i, t := range in {
		if err := t.Validate(); err != nil {
			if linked {
				return nil, nil, indexed(err, i)
			}
			return nil, nil, err
		}
		in[i].ID = holdfast.CanonicalID(t.ID)
		in[i].DebitAccountID = holdfast.CanonicalID(t.DebitAccountID)
		in[i].CreditAccountID = holdfast.CanonicalID(t.CreditAccountID)
		if t.PendingID != "" || t.Resolve != "" {
			return nil, nil, holdfast.Errorf(holdfast.EINVALID, "a hold is posted or voided through ResolveTransfer")
		}
	}
	r := &transferRequest{ctx: ctx, tenantID: req.TenantID, in: in, linked: linked, claim: req.Idempotency}
	return s.submit(ctx, r)
}

// finish returns the request's outcome: its transfers, the earlier outcome
// of its key to replay, or its error.
func (r *transferRequest) finish() ([]*holdfast.Transfer, *holdfast.Outcome, error) {
	switch {
	case r.replay != nil:
		return nil, r.replay, nil
	case r.err != nil:
		return nil, nil, r.err
	}
	return r.out, nil, nil
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

const transferColumns = `t.tenant_id, t.id, t.debit_account_id, t.credit_account_id, t.amount, t.currency, t.description,
	t.status, t.pending, t.pending_id, t.expires_at, t.metadata, t.created_at`

func scanTransfer(r pgx.CollectableRow) (*holdfast.Transfer, error) {
	return scanTransferAfter(r)
}

// scanTransferAfter scans a transfer's columns, after the given leading
// ones (such as a cursor).
func scanTransferAfter(r pgx.CollectableRow, lead ...any) (*holdfast.Transfer, error) {
	var t holdfast.Transfer
	var pendingID *string
	var meta []byte
	dest := append(lead, &t.TenantID, &t.ID, &t.DebitAccountID, &t.CreditAccountID, &t.Amount, &t.Currency, &t.Description,
		&t.Status, &t.Pending, &pendingID, &t.ExpiresAt, &meta, &t.CreatedAt)
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	if t.ExpiresAt != nil {
		at := t.ExpiresAt.UTC()
		t.ExpiresAt = &at
	}
	if pendingID != nil {
		t.PendingID = *pendingID
	}
	t.CurrencyExponent, _ = holdfast.CurrencyExponent(t.Currency)
	if len(meta) > 2 { // not {}: a transfer without metadata has none (nil), as when it was made
		if err := json.Unmarshal(meta, &t.Metadata); err != nil {
			return nil, fmt.Errorf("transfer %s metadata: %w", t.ID, err)
		}
	}
	return &t, nil
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
	tx, err := s.db.beginAccountRead(ctx, tenantID, accountID)
	if holdfast.ErrorCode(err) == holdfast.ENOTFOUND {
		return nil, "", err
	} else if err != nil {
		return nil, "", fmt.Errorf("list transfers: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, _ := tx.Query(ctx, "SELECT e.id, "+transferColumns+` FROM entries e
		JOIN transfers t ON t.tenant_id = $1 AND t.id = e.transfer_id
		WHERE e.account_id = $2 AND e.id < $3 ORDER BY e.id DESC LIMIT $4`, tenantID, accountID, before, page.Limit+1)
	var cursors []int64
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.Transfer, error) {
		var eid int64
		t, err := scanTransferAfter(r, &eid)
		cursors = append(cursors, eid)
		return t, err
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
