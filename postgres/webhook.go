package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// WebhookGroup is the name of the webhooks consumer group (a durable
// consumer of the events stream).
const WebhookGroup = "webhooks"

// Sealer seals an endpoint's signing secret for storage (webhooks.Cipher),
// bound to the endpoint's id: no secret is at rest in plaintext.
type Sealer interface {
	Seal(plaintext []byte, context string) ([]byte, error)
}

// WebhookService implements holdfast.WebhookService.
type WebhookService struct {
	db     *DB
	sealer Sealer
	// Overlap is how long a rotated-out secret keeps signing. Default 24h.
	Overlap time.Duration
}

var _ holdfast.WebhookService = (*WebhookService)(nil)

// NewWebhookService returns a WebhookService on db sealing secrets with sealer.
func NewWebhookService(db *DB, sealer Sealer) *WebhookService {
	return &WebhookService{db: db, sealer: sealer, Overlap: 24 * time.Hour}
}

// endpointColumns are read by scanEndpoint; state is computed at the
// database's clock.
const endpointColumns = `id, tenant_id, url, event_types, description, enabled, disabled_reason,
	CASE WHEN NOT enabled THEN 'disabled' WHEN open_until > now() THEN 'open'
		WHEN consecutive_failures > 0 THEN 'backing_off' ELSE 'healthy' END, created_at, updated_at`

func scanEndpoint(r pgx.CollectableRow) (*holdfast.WebhookEndpoint, error) {
	var e holdfast.WebhookEndpoint
	err := r.Scan(&e.ID, &e.TenantID, &e.URL, &e.EventTypes, &e.Description, &e.Enabled, &e.DisabledReason, &e.State,
		&e.CreatedAt, &e.UpdatedAt)
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	return &e, err
}

// CreateWebhookEndpoint creates an endpoint and its secret, sealed; with a
// claim, it stores the endpoint, redacted, as the claim's outcome in the
// same transaction. ECONFLICT past MaxWebhookEndpoints (counted under the
// tenant's row lock).
func (s *WebhookService) CreateWebhookEndpoint(ctx context.Context, tenantID string, in holdfast.WebhookEndpointCreate, claim *holdfast.IdempotencyClaim) (*holdfast.WebhookEndpoint, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.db.now()
	e := &holdfast.WebhookEndpoint{ID: uuid.Must(uuid.NewV7()).String(), TenantID: tenantID, URL: in.URL, EventTypes: in.EventTypes,
		Description: in.Description, Enabled: in.Enabled == nil || *in.Enabled, State: holdfast.WebhookHealthy,
		Secret: holdfast.NewWebhookSecret(), CreatedAt: now, UpdatedAt: now}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	if !e.Enabled {
		e.State = holdfast.WebhookDisabled
	}
	sealed, err := s.sealer.Seal([]byte(e.Secret), e.ID)
	if err != nil {
		return nil, fmt.Errorf("create webhook endpoint: seal: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_endpoints WHERE tenant_id = t.id)
			FROM tenants t WHERE t.id = $1 FOR UPDATE`, tenantID).Scan(&n); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return holdfast.Errorf(holdfast.ENOTFOUND, "tenant not found")
			}
			return err
		}
		if n >= holdfast.MaxWebhookEndpoints {
			return holdfast.Errorf(holdfast.ECONFLICT, "a tenant may have at most %d webhook endpoints", holdfast.MaxWebhookEndpoints)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, description, enabled, secret_sealed,
			created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			e.ID, tenantID, e.URL, TextArray(e.EventTypes), e.Description, e.Enabled, sealed, now); err != nil {
			return err
		}
		return completeClaim(ctx, tx, claim, e.Redacted())
	})
	if err != nil {
		return nil, fmt.Errorf("create webhook endpoint: %w", contextError(ctx, err))
	}
	return e, nil
}

// ListWebhookEndpoints lists one page of the tenant's endpoints, newest
// first; the cursor is ListAPIKeys'.
func (s *WebhookService) ListWebhookEndpoints(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.WebhookEndpoint, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	sql, args, err := newestFirst(`SELECT `+endpointColumns+` FROM webhook_endpoints WHERE tenant_id = $1`, tenantID, page)
	if err != nil {
		return nil, "", err
	}
	rows, _ := s.db.Pool.Query(ctx, sql, args...)
	es, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, "", fmt.Errorf("list webhook endpoints: %w", contextError(ctx, err))
	}
	next := ""
	if len(es) > page.Limit {
		es = es[:page.Limit]
		last := es[len(es)-1]
		next = keyCursor(last.CreatedAt, last.ID)
	}
	return es, next, nil
}

// WebhookEndpoint returns one of the tenant's endpoints; ENOTFOUND.
func (s *WebhookService) WebhookEndpoint(ctx context.Context, tenantID, id string) (*holdfast.WebhookEndpoint, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2`, id, tenantID)
	return oneEndpoint(ctx, rows)
}

func oneEndpoint(ctx context.Context, rows pgx.Rows) (*holdfast.WebhookEndpoint, error) {
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "webhook endpoint not found")
	}
	if err != nil {
		return nil, fmt.Errorf("webhook endpoint: %w", contextError(ctx, err))
	}
	return e, nil
}

// UpdateWebhookEndpoint changes the members given. Enabling an endpoint
// forgets its failures and closes its breaker.
func (s *WebhookService) UpdateWebhookEndpoint(ctx context.Context, tenantID, id string, in holdfast.WebhookEndpointUpdate) (*holdfast.WebhookEndpoint, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var types any
	if in.EventTypes != nil {
		types = TextArray(*in.EventTypes)
	}
	rows, _ := s.db.Pool.Query(ctx, `UPDATE webhook_endpoints SET url = coalesce($3, url), event_types = coalesce($4, event_types),
			description = coalesce($5, description),
			enabled = coalesce($6, enabled),
			disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason WHEN $6 THEN '' ELSE 'disabled by the tenant' END,
			consecutive_failures = CASE WHEN $6 AND NOT enabled THEN 0 ELSE consecutive_failures END,
			failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
			open_until = CASE WHEN $6 AND NOT enabled THEN NULL ELSE open_until END,
			updated_at = $7
		WHERE id = $1 AND tenant_id = $2 RETURNING `+endpointColumns,
		id, tenantID, in.URL, types, in.Description, in.Enabled, s.db.now())
	return oneEndpoint(ctx, rows)
}

// DeleteWebhookEndpoint deletes the endpoint, its deliveries and attempts.
func (s *WebhookService) DeleteWebhookEndpoint(ctx context.Context, tenantID, id string) error {
	tag, err := s.db.Pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2`, id, tenantID)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint: %w", contextError(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return holdfast.Errorf(holdfast.ENOTFOUND, "webhook endpoint not found")
	}
	return nil
}

// RotateWebhookSecret gives the endpoint a new secret; the current one
// becomes the previous, signing beside it for Overlap.
func (s *WebhookService) RotateWebhookSecret(ctx context.Context, tenantID, id string, claim *holdfast.IdempotencyClaim) (*holdfast.WebhookEndpoint, error) {
	secret := holdfast.NewWebhookSecret()
	sealed, err := s.sealer.Seal([]byte(secret), id)
	if err != nil {
		return nil, fmt.Errorf("rotate webhook secret: seal: %w", err)
	}
	now := s.db.now()
	var e *holdfast.WebhookEndpoint
	err = pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `UPDATE webhook_endpoints SET previous_sealed = secret_sealed, previous_until = $3,
			secret_sealed = $4, updated_at = $5 WHERE id = $1 AND tenant_id = $2 RETURNING `+endpointColumns,
			id, tenantID, now.Add(s.Overlap), sealed, now)
		var err error
		if e, err = oneEndpoint(ctx, rows); err != nil {
			return err
		}
		return completeClaim(ctx, tx, claim, e.Redacted())
	})
	if err != nil {
		return nil, fmt.Errorf("rotate webhook secret: %w", contextError(ctx, err))
	}
	e.Secret = secret
	return e, nil
}

// UnhealthyWebhookEndpoints lists, across every tenant, up to limit
// endpoints that are failing or disabled, those failing longest first: the
// operator console's list. The partial index keeps it a short walk however
// many healthy endpoints there are.
func (s *WebhookService) UnhealthyWebhookEndpoints(ctx context.Context, limit int) ([]*holdfast.WebhookEndpointHealth, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT `+endpointColumns+`, consecutive_failures, failing_since
		FROM webhook_endpoints WHERE consecutive_failures > 0 OR NOT enabled
		ORDER BY failing_since NULLS LAST, id LIMIT $1`, limit)
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.WebhookEndpointHealth, error) {
		var h holdfast.WebhookEndpointHealth
		e := &h.Endpoint
		err := r.Scan(&e.ID, &e.TenantID, &e.URL, &e.EventTypes, &e.Description, &e.Enabled, &e.DisabledReason, &e.State,
			&e.CreatedAt, &e.UpdatedAt, &h.ConsecutiveFailures, &h.FailingSince)
		return &h, err
	})
	if err != nil {
		return nil, fmt.Errorf("unhealthy webhook endpoints: %w", contextError(ctx, err))
	}
	return list, nil
}
