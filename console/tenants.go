package console

import (
	"context"
	"net/http"

	"github.com/holdfast/holdfast"
)

// TenantReader lists tenants and their keys, never a secret.
type TenantReader interface {
	ListTenants(ctx context.Context, page holdfast.Page) ([]*holdfast.TenantSummary, string, error)
	ListAPIKeys(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.APIKey, string, error)
}

// tenantsPageSize is how many tenants (or keys) a page lists.
const tenantsPageSize = 100

// tenantsPage lists tenants a page at a time (?cursor=), and a tenant's
// keys (/console/tenants/{id}): prefixes and dates, never secrets.
func (c *Console) tenantsPage() *page {
	if c.cfg.Tenants == nil {
		return nil
	}
	p := &page{Path: "/console/tenants/", Title: "Tenants", Template: "tenants.html",
		Data: func(r *http.Request) (any, error) {
			cursor := r.URL.Query().Get("cursor")
			list, next, err := c.cfg.Tenants.ListTenants(r.Context(), holdfast.Page{Limit: tenantsPageSize, Cursor: cursor})
			if err != nil {
				return nil, err
			}
			return map[string]any{"Tenants": list, "Next": next}, nil
		}}
	keys := &page{Path: "/console/tenants/{id}/", Title: "Tenant", Template: "tenant.html",
		Data: func(r *http.Request) (any, error) {
			id := r.PathValue("id")
			if err := holdfast.ValidID("id", id); err != nil {
				return nil, err
			}
			list, next, err := c.cfg.Tenants.ListAPIKeys(r.Context(), id, holdfast.Page{Limit: tenantsPageSize})
			if err != nil {
				return nil, err
			}
			return map[string]any{"ID": id, "Keys": list, "More": next != ""}, nil
		}}
	p.Gets = map[string]http.Handler{keys.Path + "{$}": c.pageHandler(keys)}
	p.sub = append(p.sub, keys)
	return p
}
