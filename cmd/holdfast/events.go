package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
)

// EventConfig configures the event log: the stream, the relay, the
// client-event publisher and the consumer groups.
type EventConfig struct {
	MaxBytes      int64         // --events-max-bytes: the stream's cap; past it, publishing is refused; default 1 GiB
	MaxAge        time.Duration // --events-max-age: how long events are kept; default 168h
	Duplicates    time.Duration // --events-duplicate-window: an event id is stored once within it; default 10m
	Window        int           // --events-window: client events in flight to the stream from this process; default 16384
	Batch         int           // --consumer-batch: messages per fetch, events per transaction (max.poll.records); default 200
	AckWait       time.Duration // --consumer-ack-wait: redelivery after this without an ack or heartbeat; default 30s
	MaxAckPending int           // --consumer-max-ack-pending: a group's unacknowledged events, across replicas; default 1000
	Workers       int           // --consumer-workers: batches a group works on at once in this replica; default 1
	Cooldown      time.Duration // --consumer-cooldown: a group's automatic pause when its database is overwhelmed; default 5s
	Delay         time.Duration // --consumer-delay: per-event delay, to watch lag grow (lab, benchmarks); default 0
	YieldDepth    int           // --consumer-yield-depth: groups slow down while this many transfer requests wait for group commit; 0 never; default 32
}

func defaultEventConfig() EventConfig {
	return EventConfig{MaxBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, Duplicates: 10 * time.Minute, Window: 16384, Batch: 200,
		AckWait: 30 * time.Second, MaxAckPending: 1000, Workers: 1, Cooldown: 5 * time.Second, YieldDepth: 32}
}

// eventLog is the running event log of a Main.
type eventLog struct {
	stream    events.StreamConfig
	relay     *events.Relay
	groups    []*events.Group
	publisher *events.Publisher
	admin     *events.Admin
}

// openEventLog ensures the stream, starts the relay and the consumer
// groups, and sets the event services on the HTTP server.
func (m *Main) openEventLog(ctx context.Context) error {
	c := m.Config.Events
	l := &eventLog{stream: events.StreamConfig{MaxBytes: c.MaxBytes, MaxAge: c.MaxAge, Duplicates: c.Duplicates}.WithDefaults()}
	m.events = l
	if _, err := events.EnsureStream(ctx, m.NATS.JS, l.stream); err != nil {
		return err
	}
	var err error
	l.publisher, err = events.NewPublisher(m.NATS.NC, events.PublisherConfig{Stream: l.stream, Window: c.Window, Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	metrics, err := events.NewGroupMetrics(m.Registry)
	if err != nil {
		return err
	}
	states := postgres.NewConsumerStore(m.DB)
	analytics, audit := postgres.NewAnalyticsService(m.DB), postgres.NewAuditService(m.DB)
	for _, g := range []struct {
		name    string
		applier events.Applier
	}{{"analytics", analytics}, {"audit", audit}} {
		group, err := events.NewGroup(m.NATS.JS, g.applier, states, metrics, events.GroupConfig{
			Name: g.name, Stream: l.stream, MaxBatch: c.Batch, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending,
			Workers: c.Workers, Cooldown: c.Cooldown, Delay: c.Delay, Logger: m.Logger, Yield: m.ledgerUnderPressure,
		})
		if err != nil {
			return fmt.Errorf("consumer group %s: %w", g.name, err)
		}
		if err := group.Start(ctx); err != nil {
			return err
		}
		l.groups = append(l.groups, group)
	}
	l.relay, err = events.NewRelay(m.DB, m.NATS.JS, events.RelayConfig{Stream: l.stream, Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	if err := l.relay.Start(ctx); err != nil {
		return err
	}
	l.admin = events.NewAdmin(m.NATS.JS, states, l.stream, l.groups...)
	m.Registry.MustRegister(holdfasthttp.NewCachedCollector(l.admin.Collector(m.Logger), 0)) // asks JetStream
	m.HTTP.EventService = l.publisher
	m.HTTP.AnalyticsService = analytics
	m.HTTP.AuditService = audit
	m.HTTP.ConsumerService = l.admin
	return nil
}

// closeEventLog stops the consumers after their batch in hand, then the
// relay (what it has not relayed stays in the outbox for the next start).
func (m *Main) closeEventLog() {
	if m.events == nil {
		return
	}
	for i := len(m.events.groups) - 1; i >= 0; i-- {
		m.events.groups[i].Stop()
	}
	if m.events.relay != nil {
		m.events.relay.Stop()
	}
}

// natsDir is where the embedded NATS server keeps its files.
func natsDir(dataDir string) string { return filepath.Join(dataDir, "nats") }

// ledgerUnderPressure reports whether transfer requests are piling up in
// front of group commit (--consumer-yield-depth or more waiting): the
// consumer groups then give the cores to the requests.
func (m *Main) ledgerUnderPressure() bool {
	d := m.Config.Events.YieldDepth
	return d > 0 && m.transfers != nil && m.transfers.QueueDepth() >= d
}
