package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhooks"
)

// WebhookStore is the webhooks' delivery queue: the consumer group's
// fan-out, and the dispatchers' leases and attempts (webhooks.Store).
type WebhookStore struct {
	store *ConsumerStore
	db    *DB
	// Group is the consumer group whose applied sequences guard the
	// fan-out. Default WebhookGroup.
	Group string
}

var _ webhooks.Store = (*WebhookStore)(nil)

// NewWebhookStore returns a WebhookStore on db.
func NewWebhookStore(db *DB) *WebhookStore {
	return &WebhookStore{store: NewConsumerStore(db), db: db, Group: WebhookGroup}
}

// Fanout writes each event as a message of its tenant and a delivery, due
// at once, to each of the tenant's enabled endpoints that subscribes to its
// type, exactly once: in the transaction that records the sequences.
func (s *WebhookStore) Fanout(ctx context.Context, batch []holdfast.EventDelivery) error {
	return s.store.applyOnce(ctx, s.Group, batch, func(ctx context.Context, tx pgx.Tx, fresh []holdfast.EventDelivery) error {
		n := len(fresh)
		tenants, ids, types, bodies := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([][]byte, 0, n)
		for _, d := range fresh {
			body := d.Raw
			if len(body) == 0 {
				var err error
				if body, err = json.Marshal(d.Event); err != nil {
					return err
				}
			}
			tenants, ids, types, bodies = append(tenants, d.Event.TenantID), append(ids, d.Event.ID), append(types, d.Event.Type), append(bodies, body)
		}
		now := s.db.now()
		// Only events some endpoint subscribes to are kept.
		_, err := tx.Exec(ctx, `WITH ev AS (
				SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[]) AS x(tenant_id, id, type, body))
			INSERT INTO webhook_messages (tenant_id, id, type, body, created_at)
			SELECT DISTINCT ON (tenant_id, id) tenant_id, id, type, body, $5 FROM ev
			WHERE EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.tenant_id = ev.tenant_id AND e.enabled
				AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types)))
			ON CONFLICT DO NOTHING`, UUIDArray(tenants), TextArray(ids), TextArray(types), ByteaArray(bodies), now)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `WITH ev AS (
				SELECT DISTINCT tenant_id, id, type FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(tenant_id, id, type))
			INSERT INTO webhook_deliveries (tenant_id, endpoint_id, message_id, next_attempt_at, created_at, updated_at)
			SELECT ev.tenant_id, e.id, ev.id, $4, $4, $4 FROM ev JOIN webhook_endpoints e ON e.tenant_id = ev.tenant_id AND e.enabled
				AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types))
			ORDER BY e.id, ev.id
			ON CONFLICT DO NOTHING`, UUIDArray(tenants), TextArray(ids), TextArray(types), now)
		return err
	})
}

// Lease leases due deliveries: per enabled endpoint whose breaker is not
// open, the oldest due, as many as its cap leaves beside those leased
// already (by any replica; one while its breaker half-opens), and counts
// each as an attempt begun. The endpoints' rows are locked while they are
// leased, SKIP LOCKED: replicas lease at once, never for one endpoint at
// once, so its cap holds across them.
func (s *WebhookStore) Lease(ctx context.Context, l webhooks.Lease) ([]*webhooks.Delivery, error) {
	rows, _ := s.db.Pool.Query(ctx, `WITH due AS (
			SELECT d.id FROM webhook_endpoints e
			CROSS JOIN LATERAL (
				SELECT d.id FROM webhook_deliveries d
				WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= $1
					AND (d.lease_until IS NULL OR d.lease_until <= $1)
				ORDER BY d.next_attempt_at
				LIMIT greatest(0, (CASE WHEN e.consecutive_failures >= $4 THEN 1 ELSE $3 END)
					- (SELECT count(*) FROM webhook_deliveries f
						WHERE f.endpoint_id = e.id AND f.state = 'pending' AND f.lease_until > $1))
				FOR UPDATE SKIP LOCKED) d
			WHERE e.enabled AND (e.open_until IS NULL OR e.open_until <= $1) AND e.id <> ALL (coalesce($6::uuid[], '{}'))
			LIMIT $2
			FOR UPDATE OF e SKIP LOCKED)
		UPDATE webhook_deliveries d SET lease_until = $5, attempts = d.attempts + 1, updated_at = $1
		FROM due, webhook_endpoints e, webhook_messages m
		WHERE d.id = due.id AND e.id = d.endpoint_id AND m.tenant_id = d.tenant_id AND m.id = d.message_id
		RETURNING d.id, d.tenant_id, d.endpoint_id, d.message_id, d.attempts, e.url, e.secret_sealed, e.previous_sealed,
			e.previous_until, m.body, d.created_at`,
		l.Now, l.Max, l.PerEndpoint, l.Threshold, l.Now.Add(l.For), UUIDArray(l.Exclude))
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*webhooks.Delivery, error) {
		var d webhooks.Delivery
		err := r.Scan(&d.ID, &d.TenantID, &d.EndpointID, &d.MessageID, &d.Attempt, &d.URL, &d.Secret, &d.Previous,
			&d.PreviousUntil, &d.Body, &d.CreatedAt)
		return &d, err
	})
	if err != nil {
		return nil, fmt.Errorf("lease webhook deliveries: %w", contextError(ctx, err))
	}
	return ds, nil
}

// Record records the attempt, and, unless a later attempt of the delivery
// has begun (its lease ran out and another replica took it), the
// delivery's new state and the endpoint's health. A success is one
// statement: it closes the endpoint's breaker and forgets its failures (what
// health returns for a success) without locking a healthy endpoint's row.
// A failure runs health under the endpoint's row lock, in one transaction.
func (s *WebhookStore) Record(ctx context.Context, o *webhooks.Outcome, health func(webhooks.Health) (webhooks.Health, bool)) (bool, error) {
	d := o.Delivery
	success := o.Result == holdfast.WebhookSucceeded
	state, next := "pending", o.StartedAt
	switch {
	case success:
		state = "succeeded"
	case o.Next == nil:
		state = "failed"
	default:
		next = *o.Next
	}
	args := []any{d.ID, d.Attempt, state, next, o.StartedAt.Add(o.Latency), d.EndpointID, d.MessageID, o.StartedAt,
		o.Latency.Microseconds(), o.StatusCode, o.Result, o.Error, o.Next, success}
	if success {
		// One statement, its own transaction: one round trip.
		if _, err := s.db.Pool.Exec(ctx, recordSQL, args...); err != nil {
			return false, fmt.Errorf("record webhook attempt: %w", contextError(ctx, err))
		}
		return false, nil
	}
	var disabled bool
	err := pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		disabled = false
		var updated bool
		if err := tx.QueryRow(ctx, recordSQL, args...).Scan(&updated); err != nil || !updated {
			return err
		}
		var err error
		disabled, err = s.updateHealth(ctx, tx, d, health)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record webhook attempt: %w", contextError(ctx, err))
	}
	return disabled, nil
}

// recordSQL records an attempt ($1 delivery, $2 attempt, $3 state, $4 next
// due, $5 now, $6 endpoint, $7 message, $8 started, $9 latency µs, $10
// status, $11 result, $12 error, $13 next attempt, $14 success) and
// returns whether the delivery was updated (its attempt is the latest).
const recordSQL = `WITH upd AS (
		UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, lease_until = NULL, updated_at = $5
		WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING id),
	att AS (
		INSERT INTO webhook_attempts (delivery_id, endpoint_id, message_id, attempt, started_at, latency_us, status_code,
			result, error, next_attempt_at)
		SELECT $1, $6, $7, $2, $8, $9, $10, $11, $12, CASE WHEN EXISTS (SELECT 1 FROM upd) THEN $13::timestamptz END
		WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)),
	closed AS (
		UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, open_until = NULL
		WHERE id = $6 AND $14 AND EXISTS (SELECT 1 FROM upd)
			AND (consecutive_failures > 0 OR failing_since IS NOT NULL OR open_until IS NOT NULL))
	SELECT EXISTS (SELECT 1 FROM upd)`

// updateHealth applies health to the endpoint's row, locked; when it
// disables the endpoint, the tenant's disabled event goes into the outbox.
func (s *WebhookStore) updateHealth(ctx context.Context, tx pgx.Tx, d *webhooks.Delivery, health func(webhooks.Health) (webhooks.Health, bool)) (bool, error) {
	var h webhooks.Health
	var url string
	err := tx.QueryRow(ctx, `SELECT enabled, consecutive_failures, failing_since, open_until, url FROM webhook_endpoints
		WHERE id = $1 FOR UPDATE`, d.EndpointID).Scan(&h.Enabled, &h.ConsecutiveFailures, &h.FailingSince, &h.OpenUntil, &url)
	if err != nil {
		return false, err
	}
	h, disable := health(h)
	reason := ""
	if disable {
		reason = "failing without a success since " + h.FailingSince.UTC().Format(time.RFC3339)
	}
	if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = $2, consecutive_failures = $3, failing_since = $4, open_until = $5,
		disabled_reason = CASE WHEN $6 <> '' THEN $6 ELSE disabled_reason END WHERE id = $1`,
		d.EndpointID, h.Enabled, h.ConsecutiveFailures, h.FailingSince, h.OpenUntil, reason); err != nil {
		return false, err
	}
	if !disable {
		return false, nil
	}
	ev, err := newOutboxEvent(d.TenantID, holdfast.EventWebhookEndpointDisabled, s.db.now(), map[string]string{
		"endpoint_id": d.EndpointID, "url": url, "reason": reason})
	if err != nil {
		return false, err
	}
	return true, insertOutbox(ctx, tx, ev)
}

// Stats counts endpoints by state and the deliveries due at now.
func (s *WebhookStore) Stats(ctx context.Context, now time.Time) (*webhooks.Stats, error) {
	st := &webhooks.Stats{Endpoints: map[string]int{}}
	rows, _ := s.db.Pool.Query(ctx, `SELECT CASE WHEN NOT enabled THEN 'disabled' WHEN open_until > $1 THEN 'open'
			WHEN consecutive_failures > 0 THEN 'backing_off' ELSE 'healthy' END AS state, count(*)
		FROM webhook_endpoints GROUP BY 1`, now)
	var state string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { st.Endpoints[state] = n; return nil }); err != nil {
		return nil, fmt.Errorf("webhook stats: %w", contextError(ctx, err))
	}
	var oldest *time.Time
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(*), min(next_attempt_at) FROM webhook_deliveries
		WHERE state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
			AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled AND (open_until IS NULL OR open_until <= $1))`, now).Scan(&st.Due, &oldest); err != nil {
		return nil, fmt.Errorf("webhook stats: %w", contextError(ctx, err))
	}
	if oldest != nil {
		st.OldestDue = now.Sub(*oldest)
	}
	return st, nil
}
