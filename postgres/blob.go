package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// BlobLedger records when each blob of a shared bucket was last claimed by
// a put (the blobs table); it is the s3 blob store's Ledger.
type BlobLedger struct{ db *DB }

// NewBlobLedger returns a BlobLedger on db.
func NewBlobLedger(db *DB) *BlobLedger { return &BlobLedger{db: db} }

// ClaimBlobs records that keys are stored now, in one committed statement.
// A key a sweep holds is waited for: the sweep then deletes the row and
// the claim inserts it anew, so the put that follows finds the object gone
// and writes it again. Rows are locked in key order, so concurrent claims
// of overlapping sets cannot deadlock.
func (l *BlobLedger) ClaimBlobs(ctx context.Context, keys []string) error {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	_, err := l.db.Pool.Exec(ctx, `INSERT INTO blobs (key, claimed_at)
		SELECT k, $2 FROM unnest($1::text[]) AS k ORDER BY k
		ON CONFLICT (key) DO UPDATE SET claimed_at = greatest(blobs.claimed_at, excluded.claimed_at)`,
		keys, l.db.now())
	if err != nil {
		return fmt.Errorf("claim blobs: %w", contextError(ctx, err))
	}
	return nil
}

// StaleBlobs returns up to limit keys greater than after, in key order,
// last claimed before cutoff.
func (l *BlobLedger) StaleBlobs(ctx context.Context, cutoff time.Time, after string, limit int) ([]string, error) {
	rows, _ := l.db.Pool.Query(ctx, `SELECT key FROM blobs WHERE key > $1 AND claimed_at < $2 ORDER BY key LIMIT $3`,
		after, cutoff, limit)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("stale blobs: %w", contextError(ctx, err))
	}
	return keys, nil
}

// DropBlob locks key's row if it was last claimed before cutoff, calls
// drop (which deletes the object) while it holds the lock, then deletes the
// row and commits. A claim committed before the lock makes the row
// younger than cutoff when it is read again under the lock, and drop is
// not called; a claim after it waits for the commit. It reports whether it
// called drop; drop's error rolls back and is returned.
func (l *BlobLedger) DropBlob(ctx context.Context, key string, cutoff time.Time, drop func(context.Context) error) (bool, error) {
	dropped := false
	err := pgx.BeginFunc(ctx, l.db.Pool, func(tx pgx.Tx) error {
		var k string
		err := tx.QueryRow(ctx, `SELECT key FROM blobs WHERE key = $1 AND claimed_at < $2 FOR UPDATE`, key, cutoff).Scan(&k)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		if err := drop(ctx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM blobs WHERE key = $1`, key); err != nil {
			return err
		}
		dropped = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("drop blob %s: %w", key, contextError(ctx, err))
	}
	return dropped, nil
}
