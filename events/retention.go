package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// GroupPositions reads what the consumer groups applied (postgres.ConsumerStore).
type GroupPositions interface {
	// GroupsOn returns the state of every group recorded on stream.
	GroupsOn(ctx context.Context, stream string) ([]*holdfast.ConsumerGroupState, error)
}

// RetentionConfig configures a Retention.
type RetentionConfig struct {
	// Stream is the events stream.
	Stream StreamConfig
	// Groups are the consumer groups that must each have a recorded
	// position before anything is purged, so that a group not started yet
	// (a fresh database, a group added) holds the stream whole. Every other
	// group recorded on the stream counts too. Default none.
	Groups []string
	// ReplayWindow is how long an event is kept after it was stored even
	// once every group has applied it, so that a group can be rewound or a
	// new one replay recent history. Default 1h.
	ReplayWindow time.Duration
	// Every is how often the stream is purged (with jitter). Default 30s.
	Every time.Duration
	// Logger receives failures. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the retention's metrics. Default: none.
	Registerer prometheus.Registerer
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c RetentionConfig) WithDefaults() RetentionConfig {
	c.Stream = c.Stream.WithDefaults()
	if c.ReplayWindow == 0 {
		c.ReplayWindow = time.Hour
	}
	if c.Every == 0 {
		c.Every = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c RetentionConfig) validate() error {
	if c.ReplayWindow < 0 || c.Every <= 0 {
		return errors.New("events: retention ReplayWindow must not be negative, Every must be positive")
	}
	return nil
}

// Retention deletes from the events stream what every consumer group has
// applied and is older than the replay window, whichever is later: the
// stream is purged below min(every group's applied floor + 1, the first
// message stored within the window). The groups' positions are read from
// PostgreSQL, where they are recorded with their effects, so nothing a
// group still needs is purged. Safe to run in every replica: a purge below
// a sequence already purged does nothing
// (docs/decisions/0081-retention-by-consumption.md).
type Retention struct {
	cfg       RetentionConfig
	js        njs.JetStream
	positions GroupPositions
	run       lifecycle.Runner

	purged prometheus.Counter
	floor  prometheus.Gauge
}

// NewRetention returns the retention of cfg.Stream; it does nothing until Start.
func NewRetention(js njs.JetStream, positions GroupPositions, cfg RetentionConfig) (*Retention, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Retention{cfg: cfg, js: js, positions: positions}
	r.purged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_stream_retention_purged_total", Help: "Messages the events stream's retention purged (every group applied them, and they are older than the replay window), by this replica."})
	r.floor = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_stream_retention_keep_from_seq", Help: "The first sequence of the events stream the retention keeps, as last computed by this replica."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.purged, r.floor} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Start purges the stream every Every until Stop.
func (r *Retention) Start(ctx context.Context) error {
	ctx = r.run.Start(ctx)
	r.run.Go(func() {
		for lifecycle.Sleep(ctx, r.cfg.Every/2+rand.N(r.cfg.Every)) {
			if _, err := r.PurgeOnce(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("events retention; nothing purged this round", "err", err)
			}
		}
	})
	return nil
}

// Stop stops the retention. Idempotent; safe before Start.
func (r *Retention) Stop() { r.run.Stop() }

// PurgeOnce purges what may go now and returns how many messages it purged.
func (r *Retention) PurgeOnce(ctx context.Context) (uint64, error) {
	s, err := r.js.Stream(ctx, r.cfg.Stream.Name)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	info := s.CachedInfo()
	keep, err := r.appliedBound(ctx, StreamIdentity(info))
	if err != nil {
		return 0, err
	}
	windowed, err := firstStoredSince(ctx, s, r.cfg.Stream.Name, info.State.FirstSeq, info.State.LastSeq, r.cfg.Now().Add(-r.cfg.ReplayWindow))
	if err != nil {
		return 0, err
	}
	keep = min(keep, windowed)
	r.floor.Set(float64(keep))
	if keep <= info.State.FirstSeq {
		return 0, nil
	}
	before := info.State.Msgs
	if err := s.Purge(ctx, njs.WithPurgeSequence(keep)); err != nil {
		return 0, fmt.Errorf("retention: purge below %d: %w", keep, err)
	}
	after, err := s.Info(ctx)
	if err != nil || after.State.Msgs > before {
		return 0, nil // purged, but how much is unknown
	}
	n := before - after.State.Msgs
	r.purged.Add(float64(n))
	return n, nil
}

// appliedBound returns the first sequence some group has not applied:
// 1 + the lowest applied floor of the groups on the stream. It refuses
// when a required group has no position yet, or a group's position is
// counted in another stream than identity ("" when unbound).
func (r *Retention) appliedBound(ctx context.Context, identity string) (uint64, error) {
	groups, err := r.positions.GroupsOn(ctx, r.cfg.Stream.Name)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	seen := make(map[string]bool, len(groups))
	keep := uint64(1<<63 - 1)
	for _, g := range groups {
		if g.StreamIdentity != "" && identity != "" && g.StreamIdentity != identity {
			return 0, fmt.Errorf("retention: group %s counts its progress in stream identity %s, not %s", g.Name, g.StreamIdentity, identity)
		}
		seen[g.Name] = true
		keep = min(keep, g.AppliedFloor+1)
	}
	for _, name := range r.cfg.Groups {
		if !seen[name] {
			return 0, fmt.Errorf("retention: group %s has no recorded position on %s yet", name, r.cfg.Stream.Name)
		}
	}
	if len(groups) == 0 {
		return 0, fmt.Errorf("retention: no consumer group is recorded on %s", r.cfg.Stream.Name)
	}
	return keep, nil
}

// firstStoredSince returns the first sequence in [first, last] of a
// message stored at or after cutoff, or last+1 when there is none: a
// binary search over the messages' store times, which grow with the
// sequence. A probe at a sequence since deleted reads the next message.
func firstStoredSince(ctx context.Context, s njs.Stream, name string, first, last uint64, cutoff time.Time) (uint64, error) {
	lo, hi := first, last+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := s.GetMsg(ctx, mid, njs.WithGetMsgSubject(name+".>"))
		switch {
		case errors.Is(err, njs.ErrMsgNotFound):
			hi = mid // nothing at or after mid
		case err != nil:
			return 0, fmt.Errorf("retention: message %d: %w", mid, err)
		case !m.Time.Before(cutoff):
			hi = mid
		default:
			lo = max(mid, m.Sequence) + 1
		}
	}
	return lo, nil
}

// StreamCollector returns gauges of streams' sizes against their limits,
// read from JetStream at each collection: register it behind a cache (see
// holdfasthttp.CachedCollector).
func StreamCollector(js njs.JetStream, streams ...string) prometheus.Collector {
	return &streamCollector{js: js, streams: streams}
}

var (
	streamBytesDesc    = prometheus.NewDesc("holdfast_stream_bytes", "Bytes a stream stores.", []string{"stream"}, nil)
	streamMaxBytesDesc = prometheus.NewDesc("holdfast_stream_max_bytes", "A stream's byte limit (past it, publishes are refused); absent when unlimited.", []string{"stream"}, nil)
	streamMsgsDesc     = prometheus.NewDesc("holdfast_stream_messages", "Messages a stream stores.", []string{"stream"}, nil)
	streamMaxMsgsDesc  = prometheus.NewDesc("holdfast_stream_max_messages", "A stream's message limit; absent when unlimited.", []string{"stream"}, nil)
	streamFirstDesc    = prometheus.NewDesc("holdfast_stream_first_seq", "The first sequence a stream still stores (it rises as retention purges).", []string{"stream"}, nil)
)

type streamCollector struct {
	js      njs.JetStream
	streams []string
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{streamBytesDesc, streamMaxBytesDesc, streamMsgsDesc, streamMaxMsgsDesc, streamFirstDesc} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range c.streams {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			continue // absent while JetStream cannot say
		}
		info := s.CachedInfo()
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		gauge(streamBytesDesc, float64(info.State.Bytes))
		gauge(streamMsgsDesc, float64(info.State.Msgs))
		gauge(streamFirstDesc, float64(info.State.FirstSeq))
		if info.Config.MaxBytes > 0 {
			gauge(streamMaxBytesDesc, float64(info.Config.MaxBytes))
		}
		if info.Config.MaxMsgs > 0 {
			gauge(streamMaxMsgsDesc, float64(info.Config.MaxMsgs))
		}
	}
}
