package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// ListWebhookAttempts lists one page of an endpoint's attempts, newest
// first; the cursor is the last attempt's id.
func (s *WebhookService) ListWebhookAttempts(ctx context.Context, tenantID, endpointID string, page holdfast.Page) ([]*holdfast.WebhookAttempt, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	before := int64(1<<63 - 1)
	if page.Cursor != "" {
		if before, err = strconv.ParseInt(page.Cursor, 10, 64); err != nil || before < 1 {
			return nil, "", holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
	}
	if _, err := s.WebhookEndpoint(ctx, tenantID, endpointID); err != nil {
		return nil, "", err
	}
	as, err := collectRead(ctx, s.db, func(r pgx.CollectableRow) (*holdfast.WebhookAttempt, error) {
		var a holdfast.WebhookAttempt
		var id, us int64
		err := r.Scan(&id, &a.MessageID, &a.Attempt, &a.StartedAt, &us, &a.StatusCode, &a.Result, &a.Error, &a.NextAttemptAt)
		a.ID, a.LatencyMS, a.StartedAt = strconv.FormatInt(id, 10), float64(us)/1000, a.StartedAt.UTC()
		if a.NextAttemptAt != nil {
			t := a.NextAttemptAt.UTC()
			a.NextAttemptAt = &t
		}
		return &a, err
	}, `SELECT id, message_id, attempt, started_at, latency_us, status_code, result, error, next_attempt_at
		FROM webhook_attempts WHERE endpoint_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, endpointID, before, page.Limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook attempts: %w", contextError(ctx, err))
	}
	next := ""
	if len(as) > page.Limit {
		as = as[:page.Limit]
		next = as[len(as)-1].ID
	}
	return as, next, nil
}

// ReplayWebhookMessage makes the message due at the endpoint at once, its
// schedule from the start: the same delivery, so the same webhook-id.
func (s *WebhookService) ReplayWebhookMessage(ctx context.Context, tenantID, endpointID, messageID string) (*holdfast.WebhookReplayed, error) {
	if _, err := s.WebhookEndpoint(ctx, tenantID, endpointID); err != nil {
		return nil, err
	}
	now := s.db.now()
	tag, err := s.db.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $4,
		lease_until = NULL, updated_at = $4 WHERE endpoint_id = $1 AND tenant_id = $2 AND message_id = $3`, endpointID, tenantID, messageID, now)
	if err != nil {
		return nil, fmt.Errorf("replay webhook message: %w", contextError(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "message not found for this endpoint")
	}
	return &holdfast.WebhookReplayed{MessageID: messageID, EndpointID: endpointID}, nil
}

// RecoverWebhookMessages makes every message that failed at the endpoint,
// created since the time, due again at once with its schedule from the start.
func (s *WebhookService) RecoverWebhookMessages(ctx context.Context, tenantID, endpointID string, since time.Time) (*holdfast.WebhookRecovered, error) {
	if _, err := s.WebhookEndpoint(ctx, tenantID, endpointID); err != nil {
		return nil, err
	}
	now := s.db.now()
	tag, err := s.db.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $4,
		lease_until = NULL, updated_at = $4 WHERE endpoint_id = $1 AND tenant_id = $2 AND state = 'failed' AND created_at >= $3`,
		endpointID, tenantID, since, now)
	if err != nil {
		return nil, fmt.Errorf("recover webhook messages: %w", contextError(ctx, err))
	}
	return &holdfast.WebhookRecovered{Recovered: tag.RowsAffected()}, nil
}
