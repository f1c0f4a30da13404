package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClientEventStore records the client events of keyed POST /v1/events
// batches that the stream stored before the batch was refused, so that a
// retry with the same key stores them once however long after the
// stream's duplicate window it comes (events.StoredEvents). Only refused
// batches write here; rows older than Retention are deleted as new ones
// are recorded.
type ClientEventStore struct {
	db *DB
	// Retention is how long a record is kept: the Idempotency-Key rules'
	// promise. Default 24h.
	Retention time.Duration
}

// NewClientEventStore returns a ClientEventStore on db keeping records 24 hours.
func NewClientEventStore(db *DB) *ClientEventStore {
	return &ClientEventStore{db: db, Retention: 24 * time.Hour}
}

// StoredClientEvents returns those of ids recorded as stored for tenant.
func (s *ClientEventStore) StoredClientEvents(ctx context.Context, tenantID string, ids []string) ([]string, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT event_id::text FROM client_events_stored WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])`,
		tenantID, UUIDArray(ids))
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("stored client events: %w", contextError(ctx, err))
	}
	return stored, nil
}

// RecordClientEvents records ids as stored for tenant, and deletes the
// records past Retention.
func (s *ClientEventStore) RecordClientEvents(ctx context.Context, tenantID string, ids []string) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO client_events_stored (tenant_id, event_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING`,
		tenantID, UUIDArray(ids))
	b.Queue(`DELETE FROM client_events_stored WHERE stored_at < now() - $1::interval`, s.Retention)
	if err := s.db.Pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record client events: %w", contextError(ctx, err))
	}
	return nil
}
