package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// TenantConfig configures a TenantService.
type TenantConfig struct {
	// MaxActiveKeys caps a tenant's unrevoked API keys. Default 100.
	MaxActiveKeys int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c TenantConfig) WithDefaults() TenantConfig {
	if c.MaxActiveKeys == 0 {
		c.MaxActiveKeys = 100
	}
	return c
}

func (c TenantConfig) validate() error {
	if c.MaxActiveKeys < 1 {
		return errors.New("postgres: TenantConfig.MaxActiveKeys must be positive")
	}
	return nil
}

// TenantService implements holdfast.TenantService.
type TenantService struct {
	db  *DB
	cfg TenantConfig
}

var _ holdfast.TenantService = (*TenantService)(nil)

// NewTenantService returns a TenantService on db with the default TenantConfig.
func NewTenantService(db *DB) *TenantService {
	return &TenantService{db: db, cfg: TenantConfig{}.WithDefaults()}
}

// NewTenantServiceWith returns a TenantService on db, or an error for an
// invalid configuration.
func NewTenantServiceWith(db *DB, cfg TenantConfig) (*TenantService, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &TenantService{db: db, cfg: cfg}, nil
}

// newSecret returns a random API secret (160 bits, see
// holdfast.WellFormedAPIKey) and its stored hash.
func newSecret() (secret string, hash []byte) {
	var b [holdfast.APIKeyRandomLen * 5 / 8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	secret = holdfast.APIKeyPrefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	return secret, h[:]
}

// CreateTenant creates a tenant and its first API key, and stores them as
// the claim's outcome (the key without its secret), in one transaction.
func (s *TenantService) CreateTenant(ctx context.Context, in holdfast.TenantCreate, claim *holdfast.IdempotencyClaim) (*holdfast.Tenant, *holdfast.APIKey, error) {
	if err := in.Validate(); err != nil {
		return nil, nil, err
	}
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("create tenant: %w", contextError(ctx, err))
	}
	defer tx.Rollback(ctx)
	t := &holdfast.Tenant{ID: uuid.Must(uuid.NewV7()).String(), Name: in.Name, CreatedAt: s.db.now()}
	if _, err := tx.Exec(ctx, "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)", t.ID, t.Name, t.CreatedAt); err != nil {
		return nil, nil, fmt.Errorf("create tenant: %w", contextError(ctx, err))
	}
	k, err := s.createAPIKey(ctx, tx, t.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := completeClaim(ctx, tx, claim, &holdfast.NewTenant{Tenant: t, APIKey: k.Redacted()}); err != nil {
		return nil, nil, contextError(ctx, err)
	}
	if err := commit(ctx, tx); err != nil {
		return nil, nil, fmt.Errorf("create tenant: %w", err)
	}
	return t, k, nil
}

// CreateAPIKey adds a key to a tenant, unless it already holds
// MaxActiveKeys unrevoked ones (EKEYLIMIT), and stores it as the claim's
// outcome without its secret, in the same transaction.
func (s *TenantService) CreateAPIKey(ctx context.Context, tenantID string, claim *holdfast.IdempotencyClaim) (*holdfast.APIKey, error) {
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("create api key: %w", contextError(ctx, err))
	}
	defer tx.Rollback(ctx)
	// The tenant's row lock makes concurrent creations for one tenant, in
	// any replica, count and insert one at a time. The count is a statement
	// of its own, after the lock: its snapshot then holds every key
	// committed by the transactions the lock waited for. NO KEY UPDATE
	// leaves the foreign-key checks of other inserts for the tenant free.
	var exists bool
	err = tx.QueryRow(ctx, "SELECT true FROM tenants WHERE id = $1 FOR NO KEY UPDATE", tenantID).Scan(&exists)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "tenant not found")
	}
	if err != nil {
		return nil, fmt.Errorf("create api key: %w", contextError(ctx, err))
	}
	var active int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL", tenantID).Scan(&active); err != nil {
		return nil, fmt.Errorf("create api key: %w", contextError(ctx, err))
	}
	if active >= s.cfg.MaxActiveKeys {
		return nil, holdfast.Errorf(holdfast.EKEYLIMIT, "the tenant has %d active API keys, the most it may have; revoke one first", active)
	}
	k, err := s.createAPIKey(ctx, tx, tenantID)
	if err != nil {
		return nil, err
	}
	if err := completeClaim(ctx, tx, claim, k.Redacted()); err != nil {
		return nil, contextError(ctx, err)
	}
	if err := commit(ctx, tx); err != nil {
		return nil, fmt.Errorf("create api key: %w", err)
	}
	return k, nil
}

func (s *TenantService) createAPIKey(ctx context.Context, tx pgx.Tx, tenantID string) (*holdfast.APIKey, error) {
	secret, hash := newSecret()
	k := &holdfast.APIKey{
		ID:        uuid.Must(uuid.NewV7()).String(),
		TenantID:  tenantID,
		Prefix:    secret[:len(holdfast.APIKeyPrefix)+6],
		Secret:    secret,
		CreatedAt: s.db.now(),
	}
	_, err := tx.Exec(ctx, "INSERT INTO api_keys (id, tenant_id, hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
		k.ID, k.TenantID, hash, k.Prefix, k.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("create api key: %w", contextError(ctx, err))
	}
	return k, nil
}

// ListAPIKeys lists one page of a tenant's keys, newest first (by creation
// time, then id). The cursor is the last key's position, "<created_at in
// µs since the Unix epoch>.<id>", so a page continues where the previous one
// ended whatever was created since.
func (s *TenantService) ListAPIKeys(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.APIKey, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	sql, args, err := newestFirst(`SELECT id, tenant_id, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = $1`, tenantID, page)
	if err != nil {
		return nil, "", err
	}
	rows, _ := s.db.Pool.Query(ctx, sql, args...)
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.APIKey, error) {
		var k holdfast.APIKey
		err := r.Scan(&k.ID, &k.TenantID, &k.Prefix, &k.CreatedAt, &k.RevokedAt)
		return &k, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", contextError(ctx, err))
	}
	for _, k := range keys {
		k.CreatedAt = k.CreatedAt.UTC()
		if k.RevokedAt != nil {
			t := k.RevokedAt.UTC()
			k.RevokedAt = &t
		}
	}
	next := ""
	if len(keys) > page.Limit {
		keys = keys[:page.Limit]
		last := keys[len(keys)-1]
		next = keyCursor(last.CreatedAt, last.ID)
	}
	return keys, next, nil
}

// newestFirst returns the query of one page of a tenant's rows, newest
// first by (created_at, id), from query (whose $1 is the tenant) and the
// page: its cursor is the last row's position (see keyCursor), so a page
// continues where the previous one ended whatever was created since.
func newestFirst(query, tenantID string, page holdfast.Page) (string, []any, error) {
	args := []any{tenantID, page.Limit + 1}
	if page.Cursor != "" {
		at, id, err := parseKeyCursor(page.Cursor)
		if err != nil {
			return "", nil, err
		}
		query += ` AND (created_at, id) < ($3, $4)`
		args = append(args, at, id)
	}
	return query + ` ORDER BY created_at DESC, id DESC LIMIT $2`, args, nil
}

// keyCursor is the cursor of a row at (at, id): "<created_at in µs since
// the Unix epoch>.<id>".
func keyCursor(at time.Time, id string) string {
	return strconv.FormatInt(at.UnixMicro(), 10) + "." + id
}

// maxCursorMicros bounds a cursor's time to what PostgreSQL can compare
// (year 9999).
var maxCursorMicros = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMicro()

// parseKeyCursor reads ListAPIKeys' cursor.
func parseKeyCursor(cursor string) (time.Time, string, error) {
	us, id, ok := strings.Cut(cursor, ".")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || n < 0 || n > maxCursorMicros || holdfast.ValidID("cursor", id) != nil {
		return time.Time{}, "", holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
	}
	return time.UnixMicro(n).UTC(), holdfast.CanonicalID(id), nil
}

// RevokeAPIKey revokes a key; revoking a revoked key is a no-op.
func (s *TenantService) RevokeAPIKey(ctx context.Context, tenantID, keyID string) error {
	tag, err := s.db.Pool.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
		WHERE tenant_id = $1 AND id = $2`, tenantID, keyID, s.db.now())
	if err != nil {
		return fmt.Errorf("revoke api key: %w", contextError(ctx, err))
	}
	if tag.RowsAffected() == 0 {
		return holdfast.Errorf(holdfast.ENOTFOUND, "api key not found")
	}
	return nil
}

// Authenticate returns the tenant of a live key, or EUNAUTHORIZED. A
// secret that cannot be a key is refused without a query.
func (s *TenantService) Authenticate(ctx context.Context, secret string) (string, error) {
	if !holdfast.WellFormedAPIKey(secret) {
		return "", holdfast.Errorf(holdfast.EUNAUTHORIZED, "the API key is unknown or revoked")
	}
	h := sha256.Sum256([]byte(secret))
	var tenantID string
	var revokedAt *time.Time
	err := s.db.Pool.QueryRow(ctx, "SELECT tenant_id, revoked_at FROM api_keys WHERE hash = $1", h[:]).Scan(&tenantID, &revokedAt)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && revokedAt != nil) {
		return "", holdfast.Errorf(holdfast.EUNAUTHORIZED, "the API key is unknown or revoked")
	}
	if err != nil {
		return "", fmt.Errorf("authenticate: %w", contextError(ctx, err))
	}
	return tenantID, nil
}
