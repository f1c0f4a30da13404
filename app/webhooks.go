package app

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

// WebhookConfig configures webhook delivery.
type WebhookConfig struct {
	SecretKey     string        // --webhook-secret-key: 32 bytes (hex or base64) sealing endpoint secrets; empty: no webhooks (dev keeps one in its data directory)
	Timeout       time.Duration // --webhook-timeout: an attempt succeeds on a 2xx within it; default 15s
	ScheduleScale float64       // --webhook-schedule-scale: multiplies the retry schedule (tests); default 1
	AllowPrivate  bool          // --webhook-allow-private: endpoints may reach loopback and private addresses; default false (dev: true)
	DisableAfter  time.Duration // --webhook-disable-after: an endpoint failing this long is disabled; default 120h
	MaxInFlight   int           // --webhook-max-in-flight: this replica's outbound attempts at once; default 64
	PerEndpoint   int           // --webhook-per-endpoint: one endpoint's attempts at once, across replicas; default 4
	Rate          float64       // --webhook-rate: one endpoint's attempts per second from this replica; default 50; negative: no cap
	Overlap       time.Duration // --webhook-rotation-overlap: a rotated-out secret keeps signing this long; default 24h
}

func defaultWebhookConfig() WebhookConfig {
	return WebhookConfig{Timeout: 15 * time.Second, ScheduleScale: 1, DisableAfter: 5 * 24 * time.Hour, MaxInFlight: 64,
		PerEndpoint: 4, Rate: 50, Overlap: 24 * time.Hour}
}

// Dispatcher returns the webhooks package's configuration (Cipher unset).
func (c WebhookConfig) Dispatcher() webhooks.Config {
	return webhooks.Config{Timeout: c.Timeout, Schedule: webhooks.DefaultSchedule.Scaled(c.ScheduleScale),
		Breaker: webhooks.BreakerConfig{DisableAfter: c.DisableAfter}, PerEndpoint: c.PerEndpoint, MaxInFlight: c.MaxInFlight,
		Rate: c.Rate, AllowPrivate: c.AllowPrivate}
}

// webhookFetchWait is the webhooks group's wait per fetch (the other
// groups wait 1 s: their effects are not waited for by anyone).
const webhookFetchWait = 50 * time.Millisecond

// openWebhooks starts the dispatcher and the webhooks consumer group, and
// sets the webhook service on the HTTP server. Without a secret key there
// are no webhooks: it says so, and the routes answer 501.
func (m *Main) openWebhooks(ctx context.Context, states events.States, metrics *events.GroupMetrics) error {
	c := m.Config.Webhooks
	if c.SecretKey == "" {
		m.Logger.Warn("webhooks are off: no --webhook-secret-key (HOLDFAST_WEBHOOK_SECRET_KEY) to seal endpoint secrets with; " +
			"generate one with 'openssl rand -hex 32', keep it secret, and give every replica the same")
		return nil
	}
	key, err := webhooks.ParseKey(c.SecretKey)
	if err != nil {
		return fmt.Errorf("--webhook-secret-key: %w", err)
	}
	cipher, err := webhooks.NewCipher(key)
	if err != nil {
		return err
	}
	store := postgres.NewWebhookStore(m.DB)
	wm, err := webhooks.NewMetrics(m.Registry)
	if err != nil {
		return err
	}
	dc := c.Dispatcher()
	dc.Cipher, dc.Metrics, dc.Logger = cipher, wm, m.Logger
	m.webhooks, err = webhooks.NewDispatcher(store, dc)
	if err != nil {
		return err
	}
	if err := m.webhooks.Start(ctx); err != nil {
		return err
	}
	l, ec := m.events, m.Config.Events
	group, err := events.NewGroup(m.NATS.JS, webhooks.Fanout{Store: store, Dispatcher: m.webhooks}, states, metrics, events.GroupConfig{
		Name: postgres.WebhookGroup, Stream: l.stream, Guard: l.guard, MaxBatch: ec.Batch, AckWait: ec.AckWait,
		MaxAckPending: ec.MaxAckPending, Workers: ec.Workers, Cooldown: ec.Cooldown, Logger: m.Logger, Yield: m.ledgerUnderPressure,
		// A fetch returns when its batch is full or its wait is over: a
		// short wait is what lets a quiet tenant's event reach its endpoint
		// in milliseconds rather than in half a second on average.
		FetchWait: webhookFetchWait,
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", postgres.WebhookGroup, err)
	}
	l.setup.add("consumer "+postgres.WebhookGroup, group.Ensure, group.Start)
	l.groups = append(l.groups, group)
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(webhooks.NewStatsCollector(store, m.Logger), 0))
	svc := postgres.NewWebhookService(m.DB, cipher)
	svc.Overlap = c.Overlap
	m.HTTP.WebhookService = svc
	return nil
}

// closeWebhooks stops the dispatcher: attempts in flight are cut short and
// are due again once their lease runs out.
func (m *Main) closeWebhooks() {
	if m.webhooks != nil {
		m.webhooks.Stop()
	}
}
