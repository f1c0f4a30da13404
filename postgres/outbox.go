package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// outboxEvent is an event on its way into the outbox, written in the same
// transaction as the change it reports.
type outboxEvent struct {
	id, tenantID, typ string
	topic             string // holdfast.TopicEvents when empty
	occurredAt        time.Time
	data              []byte
}

// newOutboxEvent returns the event of a change, its data encoded as JSON.
func newOutboxEvent(tenantID, typ string, at time.Time, data any) (outboxEvent, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return outboxEvent{}, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return outboxEvent{id: uuid.Must(uuid.NewV7()).String(), tenantID: tenantID, typ: typ, occurredAt: at, data: b}, nil
}

// queueOutbox inserts the events with one statement.
func queueOutbox(b *pgx.Batch, events []outboxEvent) {
	if len(events) == 0 {
		return
	}
	q := insertOutboxSQL(events)
	b.Queue(q.SQL, q.Arguments...)
}

// insertOutbox inserts the events in tx.
func insertOutbox(ctx context.Context, tx pgx.Tx, events ...outboxEvent) error {
	if len(events) == 0 {
		return nil
	}
	q := insertOutboxSQL(events)
	if _, err := tx.Exec(ctx, q.SQL, q.Arguments...); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}

func insertOutboxSQL(events []outboxEvent) *pgx.QueuedQuery {
	n := len(events)
	ids, tenants, types, at, data := make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n), make([][]byte, n)
	topics := make([]string, n)
	for i, e := range events {
		ids[i], tenants[i], types[i], at[i], data[i], topics[i] = e.id, e.tenantID, e.typ, e.occurredAt, e.data, e.topic
		if topics[i] == "" {
			topics[i] = holdfast.TopicEvents
		}
	}
	return &pgx.QueuedQuery{
		SQL: `INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[])`,
		Arguments: []any{uuids(ids), uuids(tenants), types, at, data, topics},
	}
}

// OutboxChannel is the channel every insert into the outbox notifies.
const OutboxChannel = "holdfast_outbox"

// RelayOutbox claims up to limit of the oldest unclaimed outbox rows whose
// sequence is above after (rows another relay holds are skipped, not waited
// for), hands their events to publish, and deletes them once publish
// returns nil, all in one transaction. If publish fails, or the process
// dies before the commit, the rows stay and are published again: publish
// must be idempotent (JetStream deduplicates by the event id). Returns the
// number of events relayed and the highest sequence among them (0 if none).
//
// after exists because the outbox is a queue table: every relayed row
// leaves a dead index entry at the head of the sequence index until VACUUM,
// and a scan from the start walks all of them. Under load that walk was the
// most expensive statement of a transfer (16 ms a round at 10,000
// transfers/s); a relay that starts its scan just behind what it relayed
// recently reads only the live tail.
func (db *DB) RelayOutbox(ctx context.Context, after int64, limit int, publish func(context.Context, []holdfast.Event) error) (int, int64, error) {
	// Background work waits its turn for a connection, however busy the
	// pool: failing fast is for requests, and a relay that gives up only delays.
	tx, err := db.Pool.Begin(Patient(ctx))
	if err != nil {
		return 0, 0, fmt.Errorf("relay outbox: %w", err)
	}
	defer tx.Rollback(ctx)
	// Claim and delete in one statement: the rows come back only if publish
	// fails or the process dies before the commit (the transaction rolls back).
	rows, _ := tx.Query(ctx, `DELETE FROM outbox WHERE seq IN (
			SELECT seq FROM outbox WHERE seq > $2 ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING seq, id, tenant_id, type, occurred_at, data, topic`, limit, after)
	type claimed struct {
		seq int64
		e   holdfast.Event
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var data []byte
		err := r.Scan(&c.seq, &c.e.ID, &c.e.TenantID, &c.e.Type, &c.e.OccurredAt, &data, &c.e.Topic)
		c.e.Version, c.e.Source, c.e.Data, c.e.OccurredAt = holdfast.EventVersion, holdfast.SourceLedger, data, c.e.OccurredAt.UTC()
		return c, err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("relay outbox: %w", contextError(ctx, err))
	}
	if len(list) == 0 {
		return 0, 0, nil
	}
	// DELETE … RETURNING does not promise the subquery's order: publish in seq order.
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	events := make([]holdfast.Event, len(list))
	for i, c := range list {
		events[i] = c.e
	}
	if err := publish(ctx, events); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("relay outbox: %w", contextError(ctx, err))
	}
	return len(events), list[len(list)-1].seq, nil
}

// ListenOutbox calls wake whenever an insert into the outbox commits, until
// ctx ends. It holds one connection of the pool for as long as it listens;
// it returns the error that broke the connection (the caller listens again).
func (db *DB) ListenOutbox(ctx context.Context, wake func()) error {
	conn, err := db.Pool.Acquire(Patient(ctx))
	if err != nil {
		return err
	}
	defer func() {
		// The connection is LISTENing: close it rather than return it to the pool.
		conn.Conn().Close(context.WithoutCancel(ctx))
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
		return err
	}
	wake() // whatever was inserted before LISTEN took effect
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wake()
	}
}
