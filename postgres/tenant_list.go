package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// ListTenants lists one page of tenants, oldest first (by id, a UUIDv7),
// with the count of each one's unrevoked keys, and the cursor of the next
// page ("" on the last). It is for operators (the console), never a
// tenant. Returns EINVALID for a malformed cursor.
func (s *TenantService) ListTenants(ctx context.Context, page holdfast.Page) ([]*holdfast.TenantSummary, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	sql := `SELECT t.id, t.name, t.created_at,
		(SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL)
		FROM tenants t`
	args := []any{page.Limit + 1}
	if page.Cursor != "" {
		if err := holdfast.ValidID("cursor", page.Cursor); err != nil {
			return nil, "", err
		}
		sql += ` WHERE t.id > $2`
		args = append(args, holdfast.CanonicalID(page.Cursor))
	}
	rows, _ := s.db.Pool.Query(ctx, sql+` ORDER BY t.id LIMIT $1`, args...)
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.TenantSummary, error) {
		var t holdfast.TenantSummary
		err := r.Scan(&t.ID, &t.Name, &t.CreatedAt, &t.ActiveKeys)
		t.CreatedAt = t.CreatedAt.UTC()
		return &t, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list tenants: %w", contextError(ctx, err))
	}
	next := ""
	if len(list) > page.Limit {
		list = list[:page.Limit]
		next = list[len(list)-1].ID
	}
	return list, next, nil
}
