package app

import (
	"context"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/console"
	"github.com/holdfast/holdfast/postgres"
)

// openConsole mounts the operator console on the HTTP server (with an
// admin token only) and starts sampling its charts.
func (m *Main) openConsole(ctx context.Context) (err error) {
	if m.Config.AdminToken == "" {
		return nil
	}
	// Without webhooks the page is hidden: the service is nil.
	hooks, _ := m.HTTP.WebhookService.(console.WebhookReader)
	m.console, err = console.New(console.Config{
		AdminToken: m.Config.AdminToken, CheckToken: m.HTTP.CheckAdminToken,
		Live: m.Registry, Gatherer: m.Gatherer(), Registerer: m.Registry, Logger: m.Logger,
		Consumers: m.HTTP.ConsumerService, Outbox: postgres.OutboxReader{DB: m.DB},
		DeadLetters: m.HTTP.DeadLetterService, Webhooks: hooks, Tenants: postgres.NewTenantService(m.DB),
		LabDir: filepath.Join(m.Config.DataDir, "lab-results"),
	})
	if err != nil {
		return err
	}
	m.HTTP.Console = m.console
	m.console.Start(ctx)
	return nil
}

// Gatherer gathers every metric /metrics serves: the in-process ones
// (Registry) and those read from PostgreSQL and NATS behind caches.
func (m *Main) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{m.Registry, m.slowMetrics}
}

// Console returns the operator console (nil without an admin token).
func (m *Main) Console() *console.Console { return m.console }
