package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast"
)

// IdempotencyService implements holdfast.IdempotencyService: Stripe's
// idempotency keys in one table, so they hold across replicas and restarts.
type IdempotencyService struct {
	db          *DB
	lockTimeout time.Duration
}

var _ holdfast.IdempotencyService = (*IdempotencyService)(nil)

// NewIdempotencyService returns an IdempotencyService. A claim older than
// lockTimeout (default holdfast.DefaultIdempotencyLockTimeout) may be taken
// over by a retry: its request is presumed dead.
func NewIdempotencyService(db *DB, lockTimeout time.Duration) *IdempotencyService {
	if lockTimeout <= 0 {
		lockTimeout = holdfast.DefaultIdempotencyLockTimeout
	}
	return &IdempotencyService{db: db, lockTimeout: lockTimeout}
}

// Claim takes the key, returns its stored outcome, or refuses.
func (s *IdempotencyService) Claim(ctx context.Context, tenantID, key string, fp []byte) (*holdfast.IdempotencyClaim, *holdfast.Outcome, error) {
	for range 5 {
		token := uuid.NewString()
		inserted, err := s.insert(ctx, tenantID, key, fp, token)
		if err != nil {
			return nil, nil, fmt.Errorf("claim idempotency key: %w", contextError(ctx, err))
		}
		if inserted {
			return &holdfast.IdempotencyClaim{TenantID: tenantID, Key: key, Fingerprint: fp, Token: token}, nil, nil
		}

		var (
			storedFP []byte
			oldToken *string
			live     bool
			outcome  []byte
		)
		err = s.db.Pool.QueryRow(ctx, `SELECT fingerprint, lock_token, coalesce(locked_at > now() - make_interval(secs => $3), false),
			outcome FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
			tenantID, key, s.lockTimeout.Seconds()).Scan(&storedFP, &oldToken, &live, &outcome)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // released or reaped in between: try to insert again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("claim idempotency key: %w", contextError(ctx, err))
		}
		switch {
		case !bytes.Equal(storedFP, fp):
			return nil, nil, errKeyReused
		case outcome != nil:
			o, err := holdfast.DecodeOutcome(outcome)
			if err != nil {
				return nil, nil, fmt.Errorf("claim idempotency key: stored outcome: %w", err)
			}
			return nil, o, nil
		case live:
			return nil, nil, errKeyInUse
		}
		// The holder is presumed dead: take the key over, if nobody beat us to it.
		tag, err := s.db.Pool.Exec(ctx, `UPDATE idempotency_keys SET lock_token = $3, locked_at = now()
			WHERE tenant_id = $1 AND key = $2 AND outcome IS NULL AND lock_token IS NOT DISTINCT FROM $4`,
			tenantID, key, token, oldToken)
		if err != nil {
			return nil, nil, fmt.Errorf("take over idempotency key: %w", contextError(ctx, err))
		}
		if tag.RowsAffected() == 1 {
			return &holdfast.IdempotencyClaim{TenantID: tenantID, Key: key, Fingerprint: fp, Token: token}, nil, nil
		}
	}
	return nil, nil, errKeyInUse
}

// The refusals of a request under a key.
var (
	errKeyReused = holdfast.Errorf(holdfast.EIDEMPOTENCYREUSED,
		"this Idempotency-Key was already used with a different request; use a new key for a new request")
	errKeyInUse = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "a request with this Idempotency-Key is still in progress; retry later")
	errKeyTaken = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "the Idempotency-Key was taken over by another request")
)

// insert tries to create the key's row, in one round trip. The claim commits
// with synchronous_commit off: it is only a lock, and it is durable before any
// effect that depends on it, because WAL is flushed in order.
func (s *IdempotencyService) insert(ctx context.Context, tenantID, key string, fp []byte, token string) (bool, error) {
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue("SELECT set_config('synchronous_commit', 'off', true)")
	ins := b.Queue(`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, lock_token, locked_at, created_at)
		VALUES ($1, $2, $3, $4, now(), now()) ON CONFLICT (tenant_id, key) DO NOTHING`, tenantID, key, fp, token)
	var inserted bool
	ins.Exec(func(tag pgconn.CommandTag) error { inserted = tag.RowsAffected() == 1; return nil })
	b.Queue("COMMIT")
	err := s.db.Pool.SendBatch(ctx, &b).Close()
	return inserted, err
}

// Complete stores the outcome of a request whose effects lie outside the
// database, or that had none.
func (s *IdempotencyService) Complete(ctx context.Context, c *holdfast.IdempotencyClaim, o *holdfast.Outcome) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	tag, err := s.db.Pool.Exec(ctx, completeSQL, c.TenantID, c.Key, c.Token, b)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", contextError(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return errKeyTaken
	}
	return nil
}

// Release deletes a key that has no stored outcome, so the client may retry it.
func (s *IdempotencyService) Release(ctx context.Context, c *holdfast.IdempotencyClaim) error {
	_, err := s.db.Pool.Exec(ctx, `DELETE FROM idempotency_keys
		WHERE tenant_id = $1 AND key = $2 AND lock_token = $3 AND outcome IS NULL`, c.TenantID, c.Key, c.Token)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", contextError(ctx, err))
	}
	return nil
}

// completeSQL stores the outcome ($4) of the claim ($1, $2) whose token is $3.
const completeSQL = `UPDATE idempotency_keys SET outcome = $4, lock_token = NULL, locked_at = NULL
	WHERE tenant_id = $1 AND key = $2 AND lock_token = $3`

// completeClaim stores, inside tx, the outcome of a write that succeeded
// with result, when the request holds a claim (c may be nil). It returns
// EIDEMPOTENCYINUSE when the claim was taken over: tx must then roll back,
// the effects belong to another request now.
func completeClaim(ctx context.Context, tx pgx.Tx, c *holdfast.IdempotencyClaim, result any) error {
	if c == nil {
		return nil
	}
	b, err := holdfast.EncodeOutcome(c.RequestID, result, nil)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	tag, err := tx.Exec(ctx, completeSQL, c.TenantID, c.Key, c.Token, b)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errKeyTaken
	}
	return nil
}

// ReaperConfig configures the idempotency-key reaper.
type ReaperConfig struct {
	// Retention is how long keys are kept. Default holdfast.DefaultIdempotencyRetention (24h).
	Retention time.Duration
	// Interval is the pause between sweeps. Default 10 minutes.
	Interval time.Duration
	// LockTimeout: a key still claimed is never deleted before its claim expires.
	// Default holdfast.DefaultIdempotencyLockTimeout.
	LockTimeout time.Duration
	// Logger receives sweep results. Default slog.Default().
	Logger *slog.Logger
}

// Reaper deletes idempotency keys older than the retention. It is safe to
// run in every replica: each sweep deletes in small batches that skip rows
// another replica is deleting.
type Reaper struct {
	db     *DB
	cfg    ReaperConfig
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReaper returns a Reaper; call Start to run it.
func NewReaper(db *DB, cfg ReaperConfig) *Reaper {
	if cfg.Retention <= 0 {
		cfg.Retention = holdfast.DefaultIdempotencyRetention
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = holdfast.DefaultIdempotencyLockTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Reaper{db: db, cfg: cfg}
}

// Start runs sweeps in the background until Stop. Starting twice is a no-op.
func (r *Reaper) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return nil
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			if n, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("idempotency reaper", "err", err)
			} else if n > 0 {
				r.cfg.Logger.Info("idempotency reaper", "deleted", n)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the background sweeps and waits for them. Idempotent, and safe before Start.
func (r *Reaper) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Sweep deletes every expired key now and returns how many it deleted.
func (r *Reaper) Sweep(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := r.db.Pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE ctid IN (
			SELECT ctid FROM idempotency_keys
			WHERE created_at < now() - make_interval(secs => $1)
			  AND (lock_token IS NULL OR locked_at < now() - make_interval(secs => $2))
			LIMIT 5000 FOR UPDATE SKIP LOCKED)`, r.cfg.Retention.Seconds(), r.cfg.LockTimeout.Seconds())
		if err != nil {
			return total, fmt.Errorf("reap idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}
