package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// outboxEvent is an outbox row on its way in, written in the same
// transaction as the change it reports: one event (id, data), or, when
// packed is set, the events of one tenant and type that a group-commit batch
// wrote (id is then the row's own, the stream message's deduplication id).
type outboxEvent struct {
	id, tenantID, typ string
	topic             string // holdfast.TopicEvents when empty
	occurredAt        time.Time
	data              []byte
	packed            []packedEvent
}

// packedEvent is one event of a packed outbox row.
type packedEvent struct {
	id   string
	data []byte
}

// newOutboxEvent returns the event of a change, its data encoded as JSON.
func newOutboxEvent(tenantID, typ string, at time.Time, data any) (outboxEvent, error) {
	b, err := encodeEvent(typ, data)
	if err != nil {
		return outboxEvent{}, err
	}
	return outboxEvent{id: newEventID(), tenantID: tenantID, typ: typ, occurredAt: at, data: b}, nil
}

// encodeEvent encodes the data of an event of type typ as JSON.
func encodeEvent(typ string, data any) ([]byte, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return b, nil
}

func newEventID() string { return uuid.Must(uuid.NewV7()).String() }

// Bounds of a packed outbox row, so that its stream message stays well
// under NATS's default 1 MB payload limit: the envelope adds ~250 bytes to
// each event's data.
const (
	maxPackedEvents = 1000
	maxPackedBytes  = 256 << 10
)

// packer groups a batch's events into packed outbox rows, one per tenant
// and type (more if a row would pass its bounds), keeping their order.
type packer struct {
	at   time.Time
	rows []outboxEvent
	open map[[2]string]*openRow // (tenant, type) → its row being filled
}

// openRow is a packed row being filled: its index in rows and its bytes of data.
type openRow struct{ i, size int }

func newPacker(at time.Time) *packer {
	return &packer{at: at, open: map[[2]string]*openRow{}}
}

// add encodes data as the next event of tenant and type.
func (p *packer) add(tenantID, typ string, data any) error {
	b, err := encodeEvent(typ, data)
	if err != nil {
		return err
	}
	k := [2]string{tenantID, typ}
	r := p.open[k]
	if r == nil || len(p.rows[r.i].packed) >= maxPackedEvents || r.size+len(b) > maxPackedBytes {
		r = &openRow{i: len(p.rows)}
		p.rows = append(p.rows, outboxEvent{id: newEventID(), tenantID: tenantID, typ: typ, occurredAt: p.at})
		p.open[k] = r
	}
	p.rows[r.i].packed = append(p.rows[r.i].packed, packedEvent{id: newEventID(), data: b})
	r.size += len(b)
	return nil
}

// done returns the rows; a row of one event is written as a single event.
func (p *packer) done() []outboxEvent {
	for i, r := range p.rows {
		if len(r.packed) == 1 {
			p.rows[i].id, p.rows[i].data, p.rows[i].packed = r.packed[0].id, r.packed[0].data, nil
		}
	}
	return p.rows
}

// queueOutbox inserts the rows: the single events with one statement, each
// packed row with one of its own.
func queueOutbox(b *pgx.Batch, events []outboxEvent) {
	var single []outboxEvent
	for _, e := range events {
		if e.packed == nil {
			single = append(single, e)
			continue
		}
		ids, data := make([]string, len(e.packed)), make([][]byte, len(e.packed))
		for i, pe := range e.packed {
			ids[i], data[i] = pe.id, pe.data
		}
		b.Queue(`INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic, event_ids, event_data)
			VALUES ($1, $2, $3, $4, '', $5, $6, $7)`,
			e.id, e.tenantID, e.typ, e.occurredAt, topicOf(e), UUIDArray(ids), ByteaArray(data))
	}
	if len(single) == 0 {
		return
	}
	q := insertOutboxSQL(single)
	b.Queue(q.SQL, q.Arguments...)
}

func topicOf(e outboxEvent) string {
	if e.topic == "" {
		return holdfast.TopicEvents
	}
	return e.topic
}

// insertOutbox inserts single events in tx.
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
		ids[i], tenants[i], types[i], at[i], data[i], topics[i] = e.id, e.tenantID, e.typ, e.occurredAt, e.data, topicOf(e)
	}
	return &pgx.QueuedQuery{
		SQL: `INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[])`,
		Arguments: []any{UUIDArray(ids), UUIDArray(tenants), TextArray(types), TimestamptzArray(at), ByteaArray(data), TextArray(topics)},
	}
}

// OutboxChannel is the channel every insert into the outbox notifies.
const OutboxChannel = "holdfast_outbox"

// RelayOutbox claims the oldest unclaimed outbox rows of topic whose sequence
// is above after (rows another relay holds are skipped, not waited for), up to limit
// events (at least one row, whatever it holds), hands them to publish as one
// message a row, and deletes them once publish returns nil, all in one
// transaction. If publish fails, or the process dies before the commit, the
// rows stay and are published again: publish must be idempotent (JetStream
// deduplicates by the message id), but for those whose messages publish
// marked Stored: they are deleted all the same. Returns the number of events
// relayed, the highest sequence among them (0 if none, or on an error), and
// whether more rows were waiting past the limit.
//
// after exists because the outbox is a queue table: every relayed row
// leaves a dead index entry at the head of the sequence index until VACUUM,
// and a scan from the start walks all of them. Under load that walk was the
// most expensive statement of a transfer (16 ms a round at 10,000
// transfers/s); a relay that starts its scan just behind what it relayed
// recently reads only the live tail. The scan walks the (topic, seq) index
// (migration 0023), so a topic whose stream refuses and whose rows pile up
// costs the other topics' claims nothing.
func (db *DB) RelayOutbox(ctx context.Context, topic string, after int64, limit int, publish func(context.Context, []holdfast.OutboxMessage) error) (int, int64, bool, error) {
	// Background work waits its turn for a connection, however busy the
	// pool: failing fast is for requests, and a relay that gives up only delays.
	tx, err := db.Pool.Begin(Patient(ctx))
	if err != nil {
		return 0, 0, false, fmt.Errorf("relay outbox: %w", err)
	}
	defer tx.Rollback(ctx)
	// Claim: lock up to limit rows, then take those that fit in limit events.
	// The rows locked and not taken stay locked until the commit: another
	// relay skips them, and this one takes them in its next round.
	var seqs []int64
	events, locked, full := 0, 0, false
	rows, _ := tx.Query(ctx, `SELECT seq, coalesce(cardinality(event_ids), 1) FROM outbox
		WHERE topic = $3 AND seq > $2 ORDER BY topic, seq LIMIT $1 FOR UPDATE SKIP LOCKED`, limit, after, topic)
	for rows.Next() {
		var seq int64
		var n int
		if err := rows.Scan(&seq, &n); err != nil {
			rows.Close()
			return 0, 0, false, fmt.Errorf("relay outbox: %w", err)
		}
		locked++
		if full = full || len(seqs) > 0 && events+n > limit; !full {
			seqs = append(seqs, seq)
			events += n
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("relay outbox: %w", contextError(ctx, err))
	}
	if len(seqs) == 0 {
		return 0, 0, false, nil
	}
	more := locked > len(seqs) || locked == limit
	msgs, msgSeqs, err := deleteClaimed(ctx, tx, seqs)
	if err != nil {
		return 0, 0, false, fmt.Errorf("relay outbox: %w", contextError(ctx, err))
	}
	if err := publish(ctx, msgs); err != nil {
		tx.Rollback(ctx)
		return db.deleteStored(ctx, msgs, msgSeqs), 0, false, err
	}
	last := msgSeqs[len(msgSeqs)-1]
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, false, fmt.Errorf("relay outbox: %w", contextError(ctx, err))
	}
	return events, last, more, nil
}

// deleteStored deletes, after a failed round, the rows whose messages the
// stream stored all the same (a stream that filled up partway), and returns
// how many events they held. A row it fails to delete is published again:
// the stream drops it within its duplicate window.
func (db *DB) deleteStored(ctx context.Context, msgs []holdfast.OutboxMessage, seqs []int64) int {
	var stored []int64
	events := 0
	for i := range msgs {
		if msgs[i].Stored {
			stored = append(stored, seqs[i])
			events += len(msgs[i].Events)
		}
	}
	if len(stored) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, "DELETE FROM outbox WHERE seq = ANY($1)", Int8Array(stored)); err != nil {
		return 0
	}
	return events
}

// deleteClaimed deletes the claimed outbox rows seqs inside tx and returns
// their messages and sequences, in sequence order.
func deleteClaimed(ctx context.Context, tx pgx.Tx, seqs []int64) ([]holdfast.OutboxMessage, []int64, error) {
	rows, _ := tx.Query(ctx, `DELETE FROM outbox WHERE seq = ANY($1)
		RETURNING seq, id, tenant_id, type, occurred_at, data, topic, event_ids, event_data`, Int8Array(seqs))
	type claimed struct {
		seq int64
		m   holdfast.OutboxMessage
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var e holdfast.Event
		var data []byte
		var ids []string
		var datas [][]byte
		if err := r.Scan(&c.seq, &e.ID, &e.TenantID, &e.Type, &e.OccurredAt, &data, &e.Topic, &ids, &datas); err != nil {
			return c, err
		}
		e.Version, e.Source, e.OccurredAt = holdfast.EventVersion, holdfast.SourceLedger, e.OccurredAt.UTC()
		c.m.ID = e.ID
		if ids == nil {
			e.Data = data
			c.m.Events = []holdfast.Event{e}
			return c, nil
		}
		c.m.Events = make([]holdfast.Event, len(ids))
		for i := range ids {
			c.m.Events[i] = e
			c.m.Events[i].ID, c.m.Events[i].Data = ids[i], datas[i]
		}
		return c, nil
	})
	if err != nil {
		return nil, nil, err
	}
	// DELETE … RETURNING does not promise any order: publish in seq order.
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	msgs, msgSeqs := make([]holdfast.OutboxMessage, len(list)), make([]int64, len(list))
	for i, c := range list {
		msgs[i], msgSeqs[i] = c.m, c.seq
	}
	return msgs, msgSeqs, nil
}

// ListenOutbox calls wake whenever an insert into the outbox commits, until
// ctx ends: on a notification, or directly for the group-commit writer's
// batches on this DB (see wakeSet). It holds one connection of the pool for
// as long as it listens; it returns the error that broke the connection
// (the caller listens again).
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
	// This process's own commits into the outbox wake it directly.
	defer db.relays.add(wake)()
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

// wakeSet holds the wake functions of the relays listening on a DB.
//
// A transaction that notifies takes, at commit, a lock that every other
// notifying transaction of the server waits for until it has committed
// (PostgreSQL's async.c, PreCommit_Notify): the commits of two group-commit
// batches, each inserting outbox rows, could not flush the WAL together
// (docs/decisions/0017-no-notify-from-group-commit-batches.md). So a batch committed while a relay of this process
// listens does not notify (holdfast.outbox_notify = 'off', migration 0009)
// and wakes that relay itself once committed. Other replicas' relays find
// its rows at their next sweep, should this one not relay them; every
// other insert into the outbox still notifies.
type wakeSet struct {
	mu    sync.Mutex
	wakes map[int]func()
	next  int
}

// add registers wake until the returned function is called.
func (w *wakeSet) add(wake func()) (remove func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wakes == nil {
		w.wakes = make(map[int]func())
	}
	id := w.next
	w.next++
	w.wakes[id] = wake
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.wakes, id)
	}
}

// listening reports whether a relay of this process listens.
func (w *wakeSet) listening() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wakes) > 0
}

// wake wakes every listening relay.
func (w *wakeSet) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, wake := range w.wakes {
		wake()
	}
}
