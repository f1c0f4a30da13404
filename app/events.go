package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/ratelimit"
	"github.com/holdfast/holdfast/receipts"
)

// EventConfig configures the event log: the stream, the relay, the
// client-event publisher and the consumer groups.
type EventConfig struct {
	MaxBytes      int64         // --events-max-bytes: the stream's cap; past it, publishing is refused; default 1 GiB
	MaxAge        time.Duration // --events-max-age: how long events are kept; default 168h
	Duplicates    time.Duration // --events-duplicate-window: an event id is stored once within it; default 2m
	ReplayWindow  time.Duration // --events-replay-window: events every group applied are kept this long; default 1h
	ClientShare   int           // --events-client-share: percent of MaxBytes client events may fill; the rest is the ledger's; default 80
	Quota         int64         // --events-quota: client events per QuotaPeriod per tenant; 0 none; default 600000
	QuotaBytes    int64         // --events-quota-bytes: bytes of client events (types and properties) per QuotaPeriod per tenant; default 256 MiB
	QuotaPeriod   time.Duration // --events-quota-period: the quotas' period; default 1m
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
	return EventConfig{MaxBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute, ReplayWindow: time.Hour,
		ClientShare: 80, Quota: 600_000, QuotaBytes: 256 << 20, QuotaPeriod: time.Minute, Window: 16384, Batch: 200,
		AckWait: 30 * time.Second, MaxAckPending: 1000, Workers: 1, Cooldown: 5 * time.Second, YieldDepth: 32}
}

// eventLog is the running event log of a Main.
type eventLog struct {
	embedded  *postgres.EmbeddedNATS // this replica's claim to run the database's embedded NATS
	setup     *natsSetup             // the streams' and consumers' set-up, retried until done
	stream    events.StreamConfig
	guard     *events.Guard
	relay     *events.Relay
	retention *events.Retention
	groups    []*events.Group
	publisher *events.Publisher
	admin     *events.Admin
	metrics   *events.GroupMetrics
}

// groupNames are the consumer groups of the events stream.
var groupNames = []string{postgres.AnalyticsGroup, postgres.AuditGroup, postgres.WebhookGroup}

// openNATS connects to the NATS at --nats-url, or starts the embedded one
// in the data directory, which only one replica on the database may run:
// replicas with a NATS each would each have a stream of their own. A NATS
// connection set on m before Run is used as it is.
func (m *Main) openNATS(ctx context.Context) error {
	m.events = &eventLog{}
	if m.NATS == nil {
		c := m.Config
		if c.NATSURL == "" {
			host, _ := os.Hostname()
			dir, _ := filepath.Abs(natsDir(c.DataDir))
			claim, err := postgres.ClaimEmbeddedNATS(ctx, m.DB, fmt.Sprintf("host %s, pid %d, data dir %s", host, os.Getpid(), dir))
			if err != nil {
				return fmt.Errorf("embedded NATS: %w", err)
			}
			m.events.embedded = claim
		}
		nc := natsconn.Config{URL: c.NATSURL, StoreDir: natsDir(c.DataDir), Listen: c.NATSListen}
		var err error
		m.NATS, err = natsconn.Open(ctx, nc)
		if errors.Is(err, syscall.EADDRINUSE) && c.Dev && c.NATSListen == DevNATSListen {
			// Another program has dev's usual port; the banner prints the one taken.
			nc.Listen = "127.0.0.1:0"
			m.NATS, err = natsconn.Open(ctx, nc)
		}
		if err != nil {
			return err
		}
	}
	if m.Registry != nil {
		nc := m.NATS.NC // not m.NATS.NC at scrape time: Close clears it
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "holdfast_nats_connected", Help: "1 while this replica is connected to NATS, else 0 (events then wait in the outbox)."},
			func() float64 {
				if nc.IsConnected() {
					return 1
				}
				return 0
			}))
	}
	return nil
}

// closeNATS closes the connection (and the embedded server), then gives up
// the claim to it.
func (m *Main) closeNATS() {
	if m.NATS != nil {
		m.NATS.Close()
	}
	if m.events != nil {
		m.events.embedded.Release()
	}
}

// openEventLog makes the guard, the publisher, the consumer groups and the
// relay, and sets the event services on the HTTP server. The relay starts
// at once (what it cannot publish stays in the outbox); the streams, bound
// to the database (the events stream, and the jobs stream the relay also
// publishes into), and the groups' consumers are set-up steps, which
// startNATSSetup runs.
func (m *Main) openEventLog(ctx context.Context) error {
	c := m.Config.Events
	l := m.events
	replicas, err := m.natsReplicas()
	if err != nil {
		return err
	}
	l.stream = m.eventStream(replicas)
	states := postgres.NewConsumerStore(m.DB)
	if l.guard, err = events.NewGuard(m.NATS.JS, states, events.GuardConfig{}); err != nil {
		return err
	}
	l.setup = &natsSetup{logger: m.Logger}
	l.setup.add("stream "+l.stream.Name, func(ctx context.Context) error {
		_, err := l.guard.Ensure(ctx, l.stream.Name, func(ctx context.Context) error {
			_, err := events.EnsureStream(ctx, m.NATS.JS, l.stream)
			return err
		})
		return err
	}, nil)
	// The jobs streams exist before the relay may publish a job.
	jobs := m.jobsPipeline(replicas)
	l.setup.add("stream "+jobs.Stream, func(ctx context.Context) error {
		_, err := l.guard.Ensure(ctx, jobs.Stream, func(ctx context.Context) error {
			_, err := receipts.EnsureStreams(ctx, m.NATS.JS, jobs)
			return err
		})
		return err
	}, nil)
	if c.ClientShare < 1 || c.ClientShare > 100 {
		return fmt.Errorf("--events-client-share must be between 1 and 100, not %d", c.ClientShare)
	}
	l.publisher, err = events.NewPublisher(m.NATS.NC, events.PublisherConfig{Stream: l.stream, Guard: l.guard, Window: c.Window,
		ClientMaxBytes: l.stream.MaxBytes / 100 * int64(c.ClientShare), Stored: postgres.NewClientEventStore(m.DB),
		Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	metrics, err := events.NewGroupMetrics(m.Registry)
	if err != nil {
		return err
	}
	l.metrics = metrics
	analytics, audit := postgres.NewAnalyticsService(m.DB), postgres.NewAuditService(m.DB)
	if err := m.openGroups(states, metrics, analytics, audit); err != nil {
		return err
	}
	if err := m.openWebhooks(ctx, states, metrics); err != nil {
		return err
	}
	l.relay, err = events.NewRelay(m.DB, m.NATS.JS, events.RelayConfig{Stream: l.stream, Guard: l.guard,
		JobsSubject: jobs.Subject, JobsStream: jobs.Stream, Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	if err := l.relay.Start(ctx); err != nil {
		return err
	}
	if err := m.startRetention(ctx, states); err != nil {
		return err
	}
	l.admin = events.NewAdmin(m.NATS.JS, states, l.stream, l.groups...)
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(l.admin.Collector(m.Logger), 0)) // asks JetStream
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(postgres.OutboxCollector(m.DB), 0))
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(events.StreamCollector(m.NATS.JS, l.stream.Name, jobs.Stream), 0))
	m.HTTP.EventService = l.publisher
	m.HTTP.AnalyticsService = analytics
	m.HTTP.AuditService = audit
	m.HTTP.ConsumerService = l.admin
	return nil
}

// openGroups makes the analytics and audit groups; their consumers are
// set-up steps, and each starts once its consumer exists.
func (m *Main) openGroups(states *postgres.ConsumerStore, metrics *events.GroupMetrics, analytics, audit events.Applier) error {
	c, l := m.Config.Events, m.events
	for _, g := range []struct {
		name    string
		applier events.Applier
	}{{groupNames[0], analytics}, {groupNames[1], audit}} {
		group, err := events.NewGroup(m.NATS.JS, g.applier, states, metrics, events.GroupConfig{
			Name: g.name, Stream: l.stream, Guard: l.guard, MaxBatch: c.Batch, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending,
			Workers: c.Workers, Cooldown: c.Cooldown, Delay: c.Delay, Logger: m.Logger, Yield: m.ledgerUnderPressure,
		})
		if err != nil {
			return fmt.Errorf("consumer group %s: %w", g.name, err)
		}
		l.setup.add("consumer "+g.name, group.Ensure, group.Start)
		l.groups = append(l.groups, group)
	}
	return nil
}

// closeEventLog stops the consumers after their batch in hand, then the
// relay (what it has not relayed stays in the outbox for the next start).
func (m *Main) closeEventLog() {
	if m.events == nil {
		return
	}
	m.stopNATSSetup()
	for i := len(m.events.groups) - 1; i >= 0; i-- {
		m.events.groups[i].Stop()
	}
	if m.events.retention != nil {
		m.events.retention.Stop()
	}
	if m.events.relay != nil {
		m.events.relay.Stop()
	}
}

// eventStream is the events stream's configuration.
func (m *Main) eventStream(replicas int) events.StreamConfig {
	c := m.Config.Events
	return events.StreamConfig{MaxBytes: c.MaxBytes, MaxAge: c.MaxAge, Duplicates: c.Duplicates, Replicas: replicas}.WithDefaults()
}

// jobsPipeline is the jobs streams' and the receipt workers' configuration.
func (m *Main) jobsPipeline(replicas int) receipts.Config {
	cfg := m.Config.Receipts.Pipeline()
	cfg.Replicas = replicas
	return cfg.WithDefaults()
}

// startRetention starts the purge of what every group has applied.
func (m *Main) startRetention(ctx context.Context, states *postgres.ConsumerStore) error {
	l := m.events
	var err error
	l.retention, err = events.NewRetention(m.NATS.JS, states, events.RetentionConfig{Stream: l.stream, Groups: groupNamesOf(l.groups),
		ReplayWindow: m.Config.Events.ReplayWindow, Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	return l.retention.Start(ctx)
}

// groupNamesOf returns the names of groups: those the retention waits for.
func groupNamesOf(groups []*events.Group) []string {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name()
	}
	return names
}

// eventQuota returns each tenant's quota of client events, or nil for none
// (--events-quota 0). It is held in this process: with N replicas behind a
// balancer a tenant may ingest up to N times it.
func (m *Main) eventQuota() (holdfasthttp.EventQuota, error) {
	c := m.Config.Events
	if c.Quota <= 0 {
		return nil, nil
	}
	q, err := ratelimit.NewQuota(ratelimit.QuotaConfig{Events: c.Quota, Bytes: c.QuotaBytes, Period: c.QuotaPeriod})
	if err != nil {
		return nil, fmt.Errorf("--events-quota: %w", err)
	}
	return q, nil
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

// AdoptStreams binds the database at c.DatabaseURL to the streams on the
// NATS c names (c.NATSURL, or the embedded server's files in c.DataDir),
// creating those that are missing, and resets the consumer groups'
// progress in a stream it adopts: the way back into service, knowingly,
// after the recorded stream was lost. It reports what it did on out.
// Every replica must be stopped first.
func AdoptStreams(ctx context.Context, c Config, out io.Writer) error {
	m := &Main{Config: c}
	stdout := out
	var err error
	if m.DB, err = postgres.Open(ctx, postgres.Config{URL: c.DatabaseURL, MaxConns: 2}); err != nil {
		return err
	}
	defer m.DB.Close()
	if err := postgres.Migrate(ctx, m.DB); err != nil {
		return err
	}
	if err := m.openNATS(ctx); err != nil {
		return err
	}
	defer m.closeNATS()
	replicas, err := m.natsReplicas()
	if err != nil {
		return err
	}
	stream, jobs := m.eventStream(replicas), m.jobsPipeline(replicas)
	store := postgres.NewConsumerStore(m.DB)
	for _, s := range []struct {
		name   string
		groups []string
		create func() error
	}{
		{stream.Name, groupNames, func() error { _, err := events.EnsureStream(ctx, m.NATS.JS, stream); return err }},
		{jobs.Stream, nil, func() error { _, err := receipts.EnsureStreams(ctx, m.NATS.JS, jobs); return err }},
	} {
		if _, err := m.NATS.JS.Stream(ctx, s.name); errors.Is(err, njs.ErrStreamNotFound) {
			if err := s.create(); err != nil {
				return err
			}
		}
		ad, err := events.AdoptStream(ctx, m.NATS.JS, store, s.name, s.groups)
		if err != nil {
			return err
		}
		switch {
		case ad.Previous == ad.Identity:
			fmt.Fprintf(stdout, "stream %s: bound already (identity %s); nothing changed\n", ad.Stream, ad.Identity)
		default:
			was := ad.Previous
			if was == "" {
				was = "none"
			}
			fmt.Fprintf(stdout, "stream %s: adopted identity %s (was %s)", ad.Stream, ad.Identity, was)
			if len(ad.Groups) > 0 {
				fmt.Fprintf(stdout, "; progress reset for %s: they apply the stream from its first message", strings.Join(ad.Groups, ", "))
			}
			fmt.Fprintln(stdout)
		}
	}
	return nil
}
