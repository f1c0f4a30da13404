package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// ResolveTransfer posts or voids a hold. It takes what never changes about
// the hold (its accounts, currency and amount) from the holds this service
// made, or else from a snapshot, and sends the resolution through the
// batches every transfer goes through: the batch locks the accounts, reads
// the hold again under the locks and applies the rules
// (holdfast.Book.Post), so a hold is resolved at most once however many
// requests, in however many replicas, race for it.
func (s *TransferService) ResolveTransfer(ctx context.Context, req holdfast.ResolveRequest) (*holdfast.Transfer, *holdfast.Outcome, error) {
	in := req.In
	switch {
	case req.Action != holdfast.StatusPosted && req.Action != holdfast.StatusVoided:
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "a hold is posted or voided")
	case in.Amount < 0 || in.Amount > holdfast.MaxAmount:
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "amount must be a positive whole number of minor units, at most %d", int64(holdfast.MaxAmount))
	case in.Amount != 0 && req.Action == holdfast.StatusVoided:
		return nil, nil, holdfast.Errorf(holdfast.EINVALID, "a void releases the whole hold: it takes no amount")
	}
	if in.ID != "" {
		if err := holdfast.ValidID("id", in.ID); err != nil {
			return nil, nil, err
		}
	}
	if err := holdfast.ValidMetadata(in.Metadata); err != nil {
		return nil, nil, err
	}
	h, err := s.hold(ctx, req.TenantID, req.PendingID)
	if err != nil {
		return nil, nil, err
	}
	if !h.Pending {
		return nil, nil, holdfast.Errorf(holdfast.ENOTPENDING, "transfer %s is not pending: only a hold can be posted or voided", h.ID)
	}
	amount := in.Amount
	if amount == 0 {
		amount = h.Amount // the whole hold: stored as such, so a retry under the same id matches
	}
	c := holdfast.TransferCreate{ID: holdfast.CanonicalID(in.ID), DebitAccountID: h.DebitAccountID, CreditAccountID: h.CreditAccountID,
		Amount: amount, Currency: h.Currency, Metadata: in.Metadata, PendingID: h.ID, Resolve: req.Action}
	r := &transferRequest{ctx: ctx, tenantID: req.TenantID, in: []holdfast.TransferCreate{c}, claim: req.Idempotency}
	out, replayed, err := s.submit(ctx, r)
	if err != nil || replayed != nil {
		return nil, replayed, err
	}
	s.holds.forget(req.TenantID, h.ID)
	return out[0], nil, nil
}

// hold returns the hold id names, for what never changes about it: as
// this service remembers it from its batch (see holdCache), or else read
// from a snapshot.
func (s *TransferService) hold(ctx context.Context, tenantID, id string) (*holdfast.Transfer, error) {
	if holdfast.ValidID("transfer id", id) == nil {
		if h, ok := s.holds.get(tenantID, holdfast.CanonicalID(id)); ok {
			return h, nil
		}
	}
	return s.FindTransfer(ctx, tenantID, id)
}

// ExpireDue expires up to limit holds whose timeout has passed, oldest
// first, through the ordinary batches. A hold another replica resolves
// first is skipped (the batch refuses it, quietly), so every replica may
// sweep at once.
func (s *TransferService) ExpireDue(ctx context.Context, limit int) (int, error) {
	rows, _ := s.db.Pool.Query(ctx, dueHoldsSQL, s.db.now(), limit)
	due, err := pgx.CollectRows(rows, scanTransfer)
	if err != nil {
		return 0, fmt.Errorf("expire holds: %w", contextError(ctx, err))
	}
	reqs := make([]*transferRequest, len(due))
	for i, h := range due {
		reqs[i] = &transferRequest{ctx: ctx, tenantID: h.TenantID, quiet: true, in: []holdfast.TransferCreate{{
			DebitAccountID: h.DebitAccountID, CreditAccountID: h.CreditAccountID, Amount: h.Amount, Currency: h.Currency,
			PendingID: h.ID, Resolve: holdfast.StatusExpired}}}
	}
	errs := s.submitAll(ctx, reqs)
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	return n, nil
}

// dueHoldsSQL reads up to $2 holds past their timeout at $1, oldest first,
// by the partial index transfers_expiry.
const dueHoldsSQL = "SELECT " + transferColumns + ` FROM transfers t
	WHERE t.status = 'pending' AND t.expires_at IS NOT NULL AND t.expires_at <= $1 ORDER BY t.expires_at LIMIT $2`

// submit sends one request through group commit, or, without it, applies
// it in a transaction of its own.
func (s *TransferService) submit(ctx context.Context, r *transferRequest) ([]*holdfast.Transfer, *holdfast.Outcome, error) {
	if s.grouped.Load() {
		return s.writer.submit(ctx, r)
	}
	if err := s.applyBatch(ctx, s.db.Pool, []*transferRequest{r}, nil); err != nil {
		return nil, nil, err
	}
	return r.finish()
}

// submitAll sends requests at once and returns each one's error: through
// group commit side by side, or without it as one batch.
func (s *TransferService) submitAll(ctx context.Context, reqs []*transferRequest) []error {
	errs := make([]error, len(reqs))
	if len(reqs) == 0 {
		return errs
	}
	if !s.grouped.Load() {
		if err := s.applyBatch(ctx, s.db.Pool, reqs, nil); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
		for i, r := range reqs {
			_, _, errs[i] = r.finish()
		}
		return errs
	}
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { _, _, errs[i] = s.writer.submit(ctx, r) })
	}
	wg.Wait()
	return errs
}

// HoldSweeperConfig configures a HoldSweeper.
type HoldSweeperConfig struct {
	// Interval is the pause between sweeps: a hold is expired at most this
	// long after its timeout (it can no longer be posted from its timeout
	// on, swept or not). Default 1s.
	Interval time.Duration
	// Batch is the most holds one sweep expires. Default 500.
	Batch int
	// Logger receives sweep failures. Default slog.Default().
	Logger *slog.Logger
}

// HoldSweeper expires holds whose timeout has passed (ExpireDue), in the
// background. Safe to run in every replica.
type HoldSweeper struct {
	svc *TransferService
	cfg HoldSweeperConfig
	run lifecycle.Runner
}

// NewHoldSweeper returns a HoldSweeper on svc; call Start to run it.
func NewHoldSweeper(svc *TransferService, cfg HoldSweeperConfig) *HoldSweeper {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &HoldSweeper{svc: svc, cfg: cfg}
}

// Start runs sweeps until Stop; a full sweep is followed at once by
// another. Call it once.
func (h *HoldSweeper) Start(ctx context.Context) {
	ctx = h.run.Start(ctx)
	h.run.Go(func() {
		for {
			n, err := h.svc.ExpireDue(ctx, h.cfg.Batch)
			// A sweep that fails (the database overloaded or away) is retried at
			// the next interval; nothing is lost, so it warns rather than errs.
			if err != nil && ctx.Err() == nil {
				h.cfg.Logger.Warn("hold sweeper: due holds wait for the next sweep", "err", err)
			}
			if n < h.cfg.Batch && !lifecycle.Sleep(ctx, h.cfg.Interval) {
				return
			}
		}
	})
}

// Stop ends the sweeps and waits for the one in hand. Idempotent, and safe
// before Start.
func (h *HoldSweeper) Stop() { h.run.Stop() }
