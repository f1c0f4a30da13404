package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holdfast/holdfast"
)

// GroupMetrics are the consumer groups' counters in this replica. A nil
// *GroupMetrics records nothing.
type GroupMetrics struct {
	appliedTotal *prometheus.CounterVec
	batches      *prometheus.HistogramVec
	failures     *prometheus.CounterVec
	autoPauses   *prometheus.CounterVec
	pausedGauge  *prometheus.GaugeVec
}

// NewGroupMetrics registers the groups' metrics on reg (none when nil).
func NewGroupMetrics(reg prometheus.Registerer) (*GroupMetrics, error) {
	m := &GroupMetrics{
		appliedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_consumer_applied_total", Help: "Events applied by a consumer group in this replica."}, []string{"group"}),
		batches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "holdfast_consumer_batch_seconds", Help: "Time to apply and acknowledge one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"group"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_consumer_failures_total", Help: "Batches that failed and were given back for redelivery."}, []string{"group"}),
		autoPauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_consumer_auto_pauses_total", Help: "Times a group paused itself because its downstream was overwhelmed."}, []string{"group"}),
		pausedGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "holdfast_consumer_paused", Help: "1 while a group is paused (this replica's view)."}, []string{"group"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.appliedTotal, m.batches, m.failures, m.autoPauses, m.pausedGauge} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *GroupMetrics) applied(group string, n int, d time.Duration) {
	if m != nil {
		m.appliedTotal.WithLabelValues(group).Add(float64(n))
		m.batches.WithLabelValues(group).Observe(d.Seconds())
	}
}

func (m *GroupMetrics) failed(group string) {
	if m != nil {
		m.failures.WithLabelValues(group).Inc()
	}
}

func (m *GroupMetrics) autoPause(group string) {
	if m != nil {
		m.autoPauses.WithLabelValues(group).Inc()
	}
}

func (m *GroupMetrics) paused(group string, p bool) {
	if m != nil {
		v := 0.0
		if p {
			v = 1
		}
		m.pausedGauge.WithLabelValues(group).Set(v)
	}
}

// Admin shows and steers the consumer groups; it implements
// holdfast.ConsumerService.
type Admin struct {
	js     njs.JetStream
	states States
	groups []*Group
	stream StreamConfig
	now    func() time.Time
}

var _ holdfast.ConsumerService = (*Admin)(nil)

// NewAdmin returns the admin of the given groups.
func NewAdmin(js njs.JetStream, states States, stream StreamConfig, groups ...*Group) *Admin {
	return &Admin{js: js, states: states, groups: groups, stream: stream.WithDefaults(), now: time.Now}
}

func (a *Admin) group(name string) *Group {
	for _, g := range a.groups {
		if g.Name() == name {
			return g
		}
	}
	return nil
}

// ListConsumers returns every group's lag and state. Lag in events is what
// the group has not acknowledged (pending plus in flight); lag in seconds is
// the age of the oldest event not yet acknowledged. While NATS cannot be
// read (NATSError says why), a group's state comes from the database alone
// and its stream figures are zero. Errors: only the database's.
func (a *Admin) ListConsumers(ctx context.Context) ([]*holdfast.ConsumerStatus, error) {
	connected := a.js.Conn().IsConnected()
	var stream njs.Stream
	var sinfo *njs.StreamInfo
	natsErr := errors.New("not connected to NATS")
	if connected {
		// A request to a server that stops answering waits for its deadline:
		// bound it, so that the list comes back without the stream's figures.
		nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		stream, natsErr = a.js.Stream(nctx, a.stream.Name)
		if natsErr == nil {
			sinfo, natsErr = stream.Info(nctx)
		}
		cancel()
	}
	out := make([]*holdfast.ConsumerStatus, 0, len(a.groups))
	for _, g := range a.groups {
		st, err := a.states.State(ctx, g.Name())
		if err != nil {
			return nil, err
		}
		cfg := g.Config()
		s := &holdfast.ConsumerStatus{
			Name: g.Name(), LastApplied: int64(st.LastApplied), StreamIdentity: st.StreamIdentity,
			Paused: st.PausedAt(a.now()), PauseReason: st.PauseReason,
			AckWait: cfg.AckWait.String(), MaxBatch: cfg.MaxBatch, MaxAckPending: cfg.MaxAckPending,
			NATSConnected: connected,
		}
		if st.PausedUntil != nil && a.now().Before(*st.PausedUntil) {
			u := st.PausedUntil.UTC()
			s.PausedUntil = &u
		}
		out = append(out, s)
		if natsErr != nil {
			s.NATSError = fmt.Sprintf("stream %s: %v", a.stream.Name, natsErr)
			continue
		}
		if err := a.streamFigures(ctx, stream, sinfo, g.Name(), s); err != nil {
			s.NATSError = fmt.Sprintf("consumer %s: %v", g.Name(), err)
		}
	}
	return out, nil
}

// streamFigures sets a group's figures from the stream and its consumer.
func (a *Admin) streamFigures(ctx context.Context, stream njs.Stream, sinfo *njs.StreamInfo, name string, s *holdfast.ConsumerStatus) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cons, err := stream.Consumer(ctx, name)
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	s.Pending, s.InFlight, s.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	s.StreamLast = sinfo.State.LastSeq
	s.LagMessages = info.NumPending + uint64(info.NumAckPending)
	if s.LagMessages > 0 {
		// The oldest unacknowledged message is the first after the ack floor
		// (or the first still in the stream, if older ones aged out).
		seq := max(info.AckFloor.Stream+1, sinfo.State.FirstSeq)
		if m, err := stream.GetMsg(ctx, seq); err == nil {
			s.LagSeconds = max(0, a.now().Sub(m.Time).Seconds())
		}
	}
	return nil
}

// PauseConsumer pauses a group in every replica (see ConsumerStore.Pause).
func (a *Admin) PauseConsumer(ctx context.Context, name string, until time.Time, reason string) error {
	if a.group(name) == nil {
		return holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	if !until.IsZero() && !until.After(a.now()) {
		return holdfast.Errorf(holdfast.EINVALID, "until must be in the future")
	}
	if err := a.states.Pause(ctx, name, until, reason); err != nil {
		return err
	}
	a.group(name).forgetState()
	return nil
}

// ResumeConsumer lifts every pause of a group.
func (a *Admin) ResumeConsumer(ctx context.Context, name string) error {
	if a.group(name) == nil {
		return holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	if err := a.states.Resume(ctx, name); err != nil {
		return err
	}
	a.group(name).forgetState()
	return nil
}

// Collector returns a Prometheus collector that reads every group's lag at
// scrape time (bounded by a 2s timeout).
func (a *Admin) Collector(logger *slog.Logger) prometheus.Collector {
	return &lagCollector{admin: a, logger: logger}
}

var (
	lagMessagesDesc = prometheus.NewDesc("holdfast_consumer_lag_messages", "Stream messages a consumer group has not acknowledged (a message holds one event, or the events of one tenant and type from one group-commit batch).", []string{"group"}, nil)
	lagSecondsDesc  = prometheus.NewDesc("holdfast_consumer_lag_seconds", "Age of the oldest message a consumer group has not acknowledged.", []string{"group"}, nil)
	pendingDesc     = prometheus.NewDesc("holdfast_consumer_pending", "Messages not yet delivered to a consumer group.", []string{"group"}, nil)
	inFlightDesc    = prometheus.NewDesc("holdfast_consumer_in_flight", "Messages delivered to a consumer group and not yet acknowledged.", []string{"group"}, nil)
	redeliveredDesc = prometheus.NewDesc("holdfast_consumer_redelivered", "Unacknowledged messages delivered more than once.", []string{"group"}, nil)
	lastAppliedDesc = prometheus.NewDesc("holdfast_consumer_last_applied_seq", "Highest stream sequence a consumer group applied.", []string{"group"}, nil)
)

type lagCollector struct {
	admin  *Admin
	logger *slog.Logger
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagMessagesDesc, lagSecondsDesc, pendingDesc, inFlightDesc, redeliveredDesc, lastAppliedDesc} {
		ch <- d
	}
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := c.admin.ListConsumers(ctx)
	if err != nil {
		if c.logger != nil {
			c.logger.Warn("consumer lag metrics", "err", err)
		}
		return
	}
	for _, s := range list {
		if s.NATSError != "" {
			continue // unknown, not zero
		}
		ch <- prometheus.MustNewConstMetric(lagMessagesDesc, prometheus.GaugeValue, float64(s.LagMessages), s.Name)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, s.LagSeconds, s.Name)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(s.Pending), s.Name)
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(s.InFlight), s.Name)
		ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(s.Redelivered), s.Name)
		ch <- prometheus.MustNewConstMetric(lastAppliedDesc, prometheus.GaugeValue, float64(s.LastApplied), s.Name)
	}
}

// Totals returns the events the groups applied in this replica and the
// transactions (batches) they applied them in, all groups together: the
// figures of holdfast_consumer_applied_total and _batch_seconds, for reports.
func (m *GroupMetrics) Totals() (events, transactions int64) {
	if m == nil {
		return 0, 0
	}
	ch := make(chan prometheus.Metric)
	go func() { m.appliedTotal.Collect(ch); m.batches.Collect(ch); close(ch) }()
	for metric := range ch {
		var d dto.Metric
		if metric.Write(&d) != nil {
			continue
		}
		events += int64(d.GetCounter().GetValue())
		transactions += int64(d.GetHistogram().GetSampleCount())
	}
	return events, transactions
}
