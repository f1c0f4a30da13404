package main

import (
	"context"
	"flag"
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

// eventFlags registers the event log's flags on fs.
func eventFlags(fs *flag.FlagSet, c *EventConfig) {
	fs.Int64Var(&c.MaxBytes, "events-max-bytes", int64(envInt("HOLDFAST_EVENTS_MAX_BYTES", int(c.MaxBytes))), "size cap of the events stream; past it, publishing is refused with 503 (env HOLDFAST_EVENTS_MAX_BYTES)")
	fs.DurationVar(&c.MaxAge, "events-max-age", envDuration("HOLDFAST_EVENTS_MAX_AGE", c.MaxAge), "how long the events stream keeps events (env HOLDFAST_EVENTS_MAX_AGE)")
	fs.DurationVar(&c.Duplicates, "events-duplicate-window", envDuration("HOLDFAST_EVENTS_DUPLICATE_WINDOW", c.Duplicates), "an event id (a relay's republish, a client's retry of POST /v1/events) is stored once within this window; the stream server keeps every id of the window in memory, ~140 bytes each (env HOLDFAST_EVENTS_DUPLICATE_WINDOW)")
	fs.IntVar(&c.Window, "events-window", envInt("HOLDFAST_EVENTS_WINDOW", c.Window), "client events this process may have on their way to the stream; beyond, POST /v1/events gets 503 (env HOLDFAST_EVENTS_WINDOW)")
	fs.IntVar(&c.Batch, "consumer-batch", envInt("HOLDFAST_CONSUMER_BATCH", c.Batch), "messages a consumer group fetches at once, and events it applies in one transaction (a message of a group-commit batch's events is applied whole) (env HOLDFAST_CONSUMER_BATCH)")
	fs.DurationVar(&c.AckWait, "consumer-ack-wait", envDuration("HOLDFAST_CONSUMER_ACK_WAIT", c.AckWait), "an unacknowledged batch is delivered again after this, unless its worker sends heartbeats (env HOLDFAST_CONSUMER_ACK_WAIT)")
	fs.IntVar(&c.MaxAckPending, "consumer-max-ack-pending", envInt("HOLDFAST_CONSUMER_MAX_ACK_PENDING", c.MaxAckPending), "events delivered to a group and not yet acknowledged, across all replicas (env HOLDFAST_CONSUMER_MAX_ACK_PENDING)")
	fs.IntVar(&c.Workers, "consumer-workers", envInt("HOLDFAST_CONSUMER_WORKERS", c.Workers), "batches each group works on at once in this replica (env HOLDFAST_CONSUMER_WORKERS)")
	fs.DurationVar(&c.Cooldown, "consumer-cooldown", envDuration("HOLDFAST_CONSUMER_COOLDOWN", c.Cooldown), "how long a group pauses itself when its database times out or refuses connections (env HOLDFAST_CONSUMER_COOLDOWN)")
	fs.IntVar(&c.YieldDepth, "consumer-yield-depth", envInt("HOLDFAST_CONSUMER_YIELD_DEPTH", c.YieldDepth), "while at least this many transfer requests wait for group commit, consumer groups wait 100ms before each batch: requests first, the log absorbs the events; 0 never (env HOLDFAST_CONSUMER_YIELD_DEPTH)")
	fs.DurationVar(&c.Delay, "consumer-delay", envDuration("HOLDFAST_CONSUMER_DELAY", c.Delay), "added per event consumed, to simulate a slow downstream and watch lag (env HOLDFAST_CONSUMER_DELAY)")
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
	return d > 0 && m.writer != nil && m.writer.QueueDepth() >= d
}
