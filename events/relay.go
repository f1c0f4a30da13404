package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// Outbox is the relay's view of the transactional outbox (postgres.DB).
type Outbox interface {
	// RelayOutbox claims rows of topic above sequence after that no other
	// relay holds, up to limit events (at least one row), passes them to
	// publish (a message a row) and deletes them if it returns nil, in one
	// transaction. It returns how many events it relayed, the highest
	// sequence among them, and whether more rows were waiting past limit.
	RelayOutbox(ctx context.Context, topic string, after int64, limit int, publish func(context.Context, []holdfast.OutboxMessage) error) (int, int64, bool, error)
	// ListenOutbox calls wake on every commit into the outbox until ctx ends.
	ListenOutbox(ctx context.Context, wake func()) error
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Stream is the events stream the relay publishes to.
	Stream StreamConfig
	// JobsSubject is where job messages (outbox topic "jobs") go. Default
	// holdfast.ReceiptJobsSubject.
	JobsSubject string
	// JobsStream is the stream that stores JobsSubject. Default holdfast.JobsStream.
	JobsStream string
	// Guard, if set, checks before every publish that the events stream
	// (and, for a job, the jobs stream) is the one the database is bound
	// to; when it is not, nothing is published and the outbox keeps the
	// rows. Default nil: no check (holdfast serve always sets one).
	Guard *Guard
	// Batch is the most events claimed and published at once (a row of more
	// is published alone). Default 2000.
	Batch int
	// Poll is how often the relay sweeps the whole outbox, whether or not a
	// notification woke it. Default 1s.
	Poll time.Duration
	// Settle is how far behind its latest rounds a woken relay starts its
	// scan: it claims rows above the highest sequence it relayed at least
	// Settle ago, not from the start of the outbox (whose head is a trail
	// of deleted rows until VACUUM). Sequences are taken at insert and
	// committed in any order, so a row below what was relayed can appear
	// later; one whose transaction took longer than Settle is relayed by the
	// next sweep, at most Poll later. Default 1s.
	Settle time.Duration
	// AckTimeout bounds the wait for the stream to store a batch. Default 10s.
	AckTimeout time.Duration
	// MaxBackoff is the longest a topic whose publishes fail (its stream
	// full, or away) waits before it tries again; the waits double from
	// 100ms up to it. Default 5s.
	MaxBackoff time.Duration
	// Linger is how long the relay waits after a notification before it
	// claims rows, so that the commits of a busy moment travel in one round
	// (one claim, one set of acks) instead of one round each. Default 20ms.
	Linger time.Duration
	// Logger receives the relay's errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the relay's metrics. Default: none.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c RelayConfig) WithDefaults() RelayConfig {
	c.Stream = c.Stream.WithDefaults()
	if c.JobsSubject == "" {
		c.JobsSubject = holdfast.ReceiptJobsSubject
	}
	if c.JobsStream == "" {
		c.JobsStream = holdfast.JobsStream
	}
	if c.Batch == 0 {
		c.Batch = 2000
	}
	if c.Poll == 0 {
		c.Poll = time.Second
	}
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = 20 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// relayTopics are the outbox's topics, each relayed on its own.
var relayTopics = []string{holdfast.TopicEvents, holdfast.TopicJobs}

// Relay moves events from the outbox into the stream. One runs in every
// replica: they claim disjoint rows (SKIP LOCKED), and each event is
// published with its id as Nats-Msg-Id, so a relay that dies between
// publishing and deleting its rows leaves them to be published again and
// the stream stores them once. With a Guard it publishes only into the
// streams the database is bound to.
//
// Each topic is relayed by a loop of its own, with its own cursor and
// backoff: a topic whose stream refuses (full, away) waits alone, its rows
// in the outbox, and the other topics flow on
// (docs/decisions/0080-the-relay-publishes-each-topic-on-its-own.md).
type Relay struct {
	cfg    RelayConfig
	outbox Outbox
	js     njs.JetStream
	topics []*topicRelay
	run    lifecycle.Runner

	relayed  *prometheus.CounterVec
	failures *prometheus.CounterVec
	backoffs *prometheus.GaugeVec
}

// topicRelay is the state of one topic's loop; only that loop touches it.
type topicRelay struct {
	topic  string
	wake   chan struct{}
	cursor int64       // a woken round claims rows above it
	recent []relayedAt // rounds not yet Settle old, oldest first
}

// NewRelay returns a relay from outbox to the stream on js.
func NewRelay(outbox Outbox, js njs.JetStream, cfg RelayConfig) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if cfg.Batch < 1 || cfg.Poll <= 0 || cfg.Settle <= 0 || cfg.AckTimeout <= 0 || cfg.MaxBackoff <= 0 {
		return nil, errors.New("events: relay Batch, Poll, Settle, AckTimeout and MaxBackoff must be positive")
	}
	r := &Relay{cfg: cfg, outbox: outbox, js: js}
	for _, t := range relayTopics {
		r.topics = append(r.topics, &topicRelay{topic: t, wake: make(chan struct{}, 1)})
	}
	r.relayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_outbox_relayed_total", Help: "Events moved from the outbox into their stream by this replica, by topic."}, []string{"topic"})
	r.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_outbox_relay_failures_total", Help: "Relay rounds that failed, by topic (the events stay in the outbox and are retried)."}, []string{"topic"})
	r.backoffs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "holdfast_outbox_relay_backoff_seconds", Help: "How long this replica's relay waits before it tries a topic again after a failed round (0 while the topic flows)."}, []string{"topic"})
	for _, t := range relayTopics { // every topic's series exists from the start
		r.relayed.WithLabelValues(t)
		r.failures.WithLabelValues(t)
		r.backoffs.WithLabelValues(t).Set(0)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.relayed, r.failures, r.backoffs} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Start runs the relay in the background until Stop.
func (r *Relay) Start(ctx context.Context) error {
	ctx = r.run.Start(ctx)
	r.run.Go(func() { r.listen(ctx) })
	for _, t := range r.topics {
		r.run.Go(func() { r.relay(ctx, t) })
	}
	return nil
}

// Stop stops the relay after its current rounds. Idempotent; safe before Start.
func (r *Relay) Stop() { r.run.Stop() }

// Wake makes the relay look at the outbox now, for every topic.
func (r *Relay) Wake() {
	for _, t := range r.topics {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		if err := r.outbox.ListenOutbox(ctx, r.Wake); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("outbox listen; polling until it is back", "err", err)
			lifecycle.Sleep(ctx, r.cfg.Poll)
		}
	}
}

// relay is the loop of one topic: woken by commits into the outbox, and a
// sweep from its start every Poll. A failed round makes this topic alone
// wait, doubling up to MaxBackoff.
func (r *Relay) relay(ctx context.Context, t *topicRelay) {
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		after := t.cursor
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
			if !lifecycle.Sleep(ctx, r.cfg.Linger) {
				return
			}
			select { // the notifications of the lingering time are served by this round
			case <-t.wake:
			default:
			}
		case <-tick.C:
			after = 0 // the sweep: rows committed late, or left by a failed round
		}
		if backoff > 0 && !lifecycle.Sleep(ctx, backoff) {
			return
		}
		// Drain: go on while rows were left past the round's limit.
		for ctx.Err() == nil {
			n, top, more, err := r.outbox.RelayOutbox(ctx, t.topic, after, r.cfg.Batch, r.publish)
			r.relayed.WithLabelValues(t.topic).Add(float64(n))
			if err != nil {
				if ctx.Err() == nil {
					r.failures.WithLabelValues(t.topic).Inc()
					backoff = min(max(2*backoff, 100*time.Millisecond), r.cfg.MaxBackoff)
					r.backoffs.WithLabelValues(t.topic).Set(backoff.Seconds())
					r.cfg.Logger.Warn("outbox relay; the events stay in the outbox", "topic", t.topic, "err", err, "retry_in", backoff)
				}
				t.cursor, t.recent = 0, t.recent[:0]
				break
			}
			if backoff > 0 {
				backoff = 0
				r.backoffs.WithLabelValues(t.topic).Set(0)
			}
			t.advance(r.cfg.Settle, time.Now(), top)
			if !more {
				break
			}
			after = top
		}
	}
}

// relayedAt is the highest sequence a round relayed, and when.
type relayedAt struct {
	at  time.Time
	top int64
}

// advance records a round that relayed up to top (0: nothing) and moves the
// cursor to the highest sequence relayed at least settle before now.
func (t *topicRelay) advance(settle time.Duration, now time.Time, top int64) {
	if top > 0 {
		t.recent = append(t.recent, relayedAt{now, top})
	}
	settled := 0
	for settled < len(t.recent) && now.Sub(t.recent[settled].at) >= settle {
		t.cursor = max(t.cursor, t.recent[settled].top)
		settled++
	}
	t.recent = append(t.recent[:0], t.recent[settled:]...)
}

// RelayOnce relays one batch of each topic from the start of the outbox
// and returns how many events it moved; a topic that fails does not keep
// the others from being relayed, and its error is returned (joined).
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for _, t := range r.topics {
		n, _, _, err := r.outbox.RelayOutbox(ctx, t.topic, 0, r.cfg.Batch, r.publish)
		r.relayed.WithLabelValues(t.topic).Add(float64(n))
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", t.topic, err))
		}
	}
	return total, errors.Join(errs...)
}

// publish stores the messages in the stream, waiting for every ack. A
// message of several events carries their envelopes one a line, marked by
// BatchHeader: they share a tenant and a type, and so the subject.
func (r *Relay) publish(ctx context.Context, msgs []holdfast.OutboxMessage) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	defer cancel()
	if err := r.checkStreams(ctx, msgs); err != nil {
		return err
	}
	futures := make([]njs.PubAckFuture, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		if len(m.Events) == 0 {
			m.Stored = true // nothing to store
			continue
		}
		first := &m.Events[0]
		var msg *nats.Msg
		if first.Topic == holdfast.TopicJobs {
			msg = &nats.Msg{Subject: r.cfg.JobsSubject, Data: first.Data}
		} else {
			data := make([]byte, 0, envelopesSize(m.Events))
			for j := range m.Events {
				if j > 0 {
					data = append(data, '\n')
				}
				data = appendEvent(data, &m.Events[j])
			}
			msg = &nats.Msg{Subject: r.cfg.Stream.Subject(first.TenantID, first.Type), Data: data}
			if len(m.Events) > 1 {
				msg.Header = nats.Header{BatchHeader: []string{strconv.Itoa(len(m.Events))}}
			}
		}
		f, err := r.js.PublishMsgAsync(msg, njs.WithMsgID(m.ID))
		if err != nil {
			awaitStored(ctx, futures, func(i int) { msgs[i].Stored = true })
			return fmt.Errorf("publish message %s: %w", m.ID, err)
		}
		futures[i] = f
	}
	return awaitStored(ctx, futures, func(i int) { msgs[i].Stored = true })
}

// checkStreams checks, with a Guard, the streams msgs go to.
func (r *Relay) checkStreams(ctx context.Context, msgs []holdfast.OutboxMessage) error {
	if r.cfg.Guard == nil {
		return nil
	}
	events, jobs := false, false
	for i := range msgs {
		if len(msgs[i].Events) > 0 && msgs[i].Events[0].Topic == holdfast.TopicJobs {
			jobs = true
		} else {
			events = true
		}
	}
	if events {
		if _, err := r.cfg.Guard.Check(ctx, r.cfg.Stream.Name); err != nil {
			return err
		}
	}
	if jobs {
		if _, err := r.cfg.Guard.Check(ctx, r.cfg.JobsStream); err != nil {
			return err
		}
	}
	return nil
}

// awaitStored waits for the ack of every future (nil ones are skipped),
// calls stored with the index of each the stream stored, and returns the
// first error.
func awaitStored(ctx context.Context, futures []njs.PubAckFuture, stored func(i int)) error {
	var first error
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			stored(i)
		case err := <-f.Err():
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for the stream to store events: %w", ctx.Err())
		}
	}
	return first
}

// Relayed returns how many events this relay has moved into the stream:
// the figure of holdfast_outbox_relayed_total, for reports.
func (r *Relay) Relayed() int64 {
	var total int64
	for _, t := range relayTopics {
		var d dto.Metric
		r.relayed.WithLabelValues(t).Write(&d)
		total += int64(d.GetCounter().GetValue())
	}
	return total
}
