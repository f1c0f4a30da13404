package console

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// unhealthyListed is how many failing or disabled endpoints the page lists.
const unhealthyListed = 50

// recoverSpan is how far before an endpoint began failing the page's
// Recover reaches back: a message's retries span about 27 hours, so one
// that failed for good may have been first sent that long before.
const recoverSpan = 28 * time.Hour

// recoverDefault is how far back Recover reaches for an endpoint that is
// not failing (disabled by its tenant): the days before it is disabled.
const recoverDefault = 5 * 24 * time.Hour

// WebhookReader lists the endpoints that fail and acts on them, across
// tenants: the console is the operator's.
type WebhookReader interface {
	UnhealthyWebhookEndpoints(ctx context.Context, limit int) ([]*holdfast.WebhookEndpointHealth, error)
	RecoverWebhookMessages(ctx context.Context, tenantID, endpointID string, since time.Time) (*holdfast.WebhookRecovered, error)
	UpdateWebhookEndpoint(ctx context.Context, tenantID, id string, in holdfast.WebhookEndpointUpdate) (*holdfast.WebhookEndpoint, error)
}

// webhooksPage shows webhook delivery: endpoints by state and the backlog
// of due deliveries (from the metrics), and the endpoints failing longest,
// with Recover (their failed messages due again, same ids) and Enable.
func (c *Console) webhooksPage() *page {
	if c.cfg.Webhooks == nil {
		return nil
	}
	list := &cached[[]*holdfast.WebhookEndpointHealth]{ttl: c.cfg.CacheTTL, load: func(ctx context.Context) ([]*holdfast.WebhookEndpointHealth, error) {
		return c.cfg.Webhooks.UnhealthyWebhookEndpoints(ctx, unhealthyListed)
	}}
	act := func(do func(r *http.Request, tenant, id string) error) func(*http.Request) error {
		return func(r *http.Request) error {
			tenant, id := r.PathValue("tenant"), r.PathValue("id")
			if err := holdfast.ValidID("tenant", tenant); err != nil {
				return err
			}
			if err := holdfast.ValidID("id", id); err != nil {
				return err
			}
			defer list.invalidate()
			return do(r, tenant, id)
		}
	}
	return &page{Path: "/console/webhooks/", Title: "Webhooks", Template: "webhooks.html",
		Data: func(r *http.Request) (any, error) {
			f, err := c.figures.get(r.Context())
			if err != nil && f == nil {
				return nil, err
			}
			l, err := list.get(r.Context())
			if err != nil {
				return nil, err
			}
			states := f.by("holdfast_webhook_endpoints", "state")
			state := func(s string) float64 {
				if v, ok := states[s]; ok {
					return v
				}
				return math.NaN()
			}
			gauge := func(name string) float64 {
				if v, ok := f.sum(name, nil); ok {
					return v
				}
				return math.NaN()
			}
			return map[string]any{
				"Healthy": state(holdfast.WebhookHealthy), "BackingOff": state(holdfast.WebhookBackingOff),
				"Open": state(holdfast.WebhookOpen), "Disabled": state(holdfast.WebhookDisabled),
				"Due": gauge("holdfast_webhook_deliveries_due"), "OldestDue": gauge("holdfast_webhook_oldest_due_seconds"),
				"Endpoints": l, "Listed": unhealthyListed,
			}, nil
		},
		Actions: map[string]func(*http.Request) error{
			"/console/webhooks/{tenant}/{id}/recover": act(func(r *http.Request, tenant, id string) error {
				since, err := time.Parse(time.RFC3339, r.PostFormValue("since"))
				if err != nil {
					since = time.Now().Add(-recoverDefault)
				}
				_, err = c.cfg.Webhooks.RecoverWebhookMessages(r.Context(), tenant, id, since)
				return err
			}),
			"/console/webhooks/{tenant}/{id}/enable": act(func(r *http.Request, tenant, id string) error {
				enabled := true
				_, err := c.cfg.Webhooks.UpdateWebhookEndpoint(r.Context(), tenant, id, holdfast.WebhookEndpointUpdate{Enabled: &enabled})
				return err
			}),
		}}
}

// recoverSince is the time the page's Recover reaches back to for an
// endpoint failing since t (or, if it is not failing, for 5 days).
func recoverSince(t *time.Time) string {
	if t == nil {
		return time.Now().Add(-recoverDefault).UTC().Format(time.RFC3339)
	}
	return t.Add(-recoverSpan).UTC().Format(time.RFC3339)
}
