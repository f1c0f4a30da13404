package apitest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/promtest"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/postgres"
)

// EventLog is a running event log for tests: an embedded JetStream, the
// relay and the analytics and audit groups on db.
type EventLog struct {
	NATS      *natsconn.Conn
	Stream    events.StreamConfig
	Publisher *events.Publisher
	Admin     *events.Admin
	Analytics *postgres.AnalyticsService
	Audit     *postgres.AuditService
	// Metrics holds the groups' metrics (holdfast_consumer_*).
	Metrics *prometheus.Registry
}

// MustEventLog starts an event log on db, stopped when tb ends. Its groups
// poll fast (FetchWait 100ms, StatePoll 50ms) so tests see effects soon.
func MustEventLog(tb testing.TB, db *postgres.DB, configure ...func(*events.GroupConfig)) *EventLog {
	tb.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	nc, err := natsconn.Open(ctx, natsconn.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	l := &EventLog{NATS: nc, Stream: events.StreamConfig{MaxBytes: 64 << 20}.WithDefaults(),
		Analytics: postgres.NewAnalyticsService(db), Audit: postgres.NewAuditService(db), Metrics: prometheus.NewRegistry()}
	metrics, err := events.NewGroupMetrics(l.Metrics)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, nc.JS, l.Stream); err != nil {
		tb.Fatal(err)
	}
	if l.Publisher, err = events.NewPublisher(nc.NC, events.PublisherConfig{Stream: l.Stream, Logger: quiet}); err != nil {
		tb.Fatal(err)
	}
	relay, err := events.NewRelay(db, nc.JS, events.RelayConfig{Stream: l.Stream, Logger: quiet, Poll: 100 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	states := postgres.NewConsumerStore(db)
	var groups []*events.Group
	for _, g := range []struct {
		name    string
		applier events.Applier
	}{{postgres.AnalyticsGroup, l.Analytics}, {postgres.AuditGroup, l.Audit}} {
		cfg := events.GroupConfig{Name: g.name, Stream: l.Stream, Logger: quiet, FetchWait: 100 * time.Millisecond, StatePoll: 50 * time.Millisecond}
		for _, f := range configure {
			f(&cfg)
		}
		group, err := events.NewGroup(nc.JS, g.applier, states, metrics, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		groups = append(groups, group)
	}
	workers := []worker{relay}
	for _, g := range groups {
		workers = append(workers, g)
	}
	for _, w := range workers {
		if err := w.Start(ctx); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(w.Stop)
	}
	l.Admin = events.NewAdmin(nc.JS, states, l.Stream, groups...)
	return l
}

// WorkerSeesPause reports whether the group's worker has seen its pause:
// the worker sets holdfast_consumer_paused between fetches only, so then
// none of its fetches is in flight (with the one worker a group has here).
func (l *EventLog) WorkerSeesPause(tb testing.TB, group string) bool {
	tb.Helper()
	return promtest.GaugeValue(tb, l.Metrics, "holdfast_consumer_paused", "group", group) == 1
}

// worker is a background worker with the shared lifecycle.
type worker interface {
	Start(context.Context) error
	Stop()
}

// Services sets the log's services on an HTTP server (for MustServeWith).
func (l *EventLog) Services(s *holdfasthttp.Server) {
	s.EventService = l.Publisher
	s.AnalyticsService = l.Analytics
	s.AuditService = l.Audit
	s.ConsumerService = l.Admin
}
