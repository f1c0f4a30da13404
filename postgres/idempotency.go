package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
			continue // released, or its partition dropped, in between: try to insert again
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
// effect that depends on it, because WAL is flushed in order. It holds the
// epoch lock shared, so its key goes to the partition of every concurrent
// insert of the same key (see epochLock).

func (s *IdempotencyService) insert(ctx context.Context, tenantID, key string, fp []byte, token string) (bool, error) {
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue("SELECT set_config('synchronous_commit', 'off', true)")
	b.Queue(epochSharedSQL, epochLock)
	ins := b.Queue(insertKeySQL, tenantID, key, fp, token)
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

// insertKeySQL inserts the claim ($1 tenant, $2 key, $3 fingerprint, $4
// token) unless the key is in any epoch's partition; a concurrent insert of
// the same key is in the same epoch, and the primary key settles it.
const insertKeySQL = `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, lock_token, locked_at, created_at)
	SELECT $1::uuid, $2::text, $3::bytea, $4::uuid, now(), now()
	WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE tenant_id = $1 AND key = $2)
	ON CONFLICT (tenant_id, key, epoch) DO NOTHING`

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
