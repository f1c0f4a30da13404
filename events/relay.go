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
	// RelayOutbox claims rows above sequence after that no other relay
	// holds, up to limit events (at least one row), passes them to publish
	// (a message a row) and deletes them if it returns nil, in one
	// transaction. It returns how many events it relayed, the highest
	// sequence among them, and whether more rows were waiting past limit.
	RelayOutbox(ctx context.Context, after int64, limit int, publish func(context.Context, []holdfast.OutboxMessage) error) (int, int64, bool, error)
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Relay moves events from the outbox into the stream. One runs in every
// replica: they claim disjoint rows (SKIP LOCKED), and each event is
// published with its id as Nats-Msg-Id, so a relay that dies between
// publishing and deleting its rows leaves them to be published again and
// the stream stores them once. With a Guard it publishes only into the
// streams the database is bound to.
type Relay struct {
	cfg    RelayConfig
	outbox Outbox
	js     njs.JetStream

	wake chan struct{}
	run  lifecycle.Runner

	// Only the relay's goroutine touches these.
	cursor int64       // a woken round claims rows above it
	recent []relayedAt // rounds not yet Settle old, oldest first

	relayed  prometheus.Counter
	failures prometheus.Counter
}

// NewRelay returns a relay from outbox to the stream on js.
func NewRelay(outbox Outbox, js njs.JetStream, cfg RelayConfig) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if cfg.Batch < 1 || cfg.Poll <= 0 || cfg.Settle <= 0 || cfg.AckTimeout <= 0 {
		return nil, errors.New("events: relay Batch, Poll, Settle and AckTimeout must be positive")
	}
	r := &Relay{cfg: cfg, outbox: outbox, js: js, wake: make(chan struct{}, 1)}
	r.relayed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_outbox_relayed_total", Help: "Events moved from the outbox into the events stream by this replica."})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_outbox_relay_failures_total", Help: "Relay rounds that failed (the events stay in the outbox and are retried)."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.relayed, r.failures} {
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
	r.run.Go(func() { r.relay(ctx) })
	return nil
}

// Stop stops the relay after its current round. Idempotent; safe before Start.
func (r *Relay) Stop() { r.run.Stop() }

// Wake makes the relay look at the outbox now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
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

func (r *Relay) relay(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		after := r.cursor
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			if !lifecycle.Sleep(ctx, r.cfg.Linger) {
				return
			}
			select { // the notifications of the lingering time are served by this round
			case <-r.wake:
			default:
			}
		case <-t.C:
			after = 0 // the sweep: rows committed late, or left by a failed round
		}
		if backoff > 0 && !lifecycle.Sleep(ctx, backoff) {
			return
		}
		// Drain: go on while rows were left past the round's limit.
		for ctx.Err() == nil {
			n, top, more, err := r.outbox.RelayOutbox(ctx, after, r.cfg.Batch, r.publish)
			r.relayed.Add(float64(n))
			if err != nil {
				if ctx.Err() == nil {
					r.failures.Inc()
					backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
					r.cfg.Logger.Warn("outbox relay; the events stay in the outbox", "err", err, "retry_in", backoff)
				}
				r.cursor, r.recent = 0, r.recent[:0]
				break
			}
			backoff = 0
			r.advance(time.Now(), top)
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
// cursor to the highest sequence relayed at least Settle before now.
func (r *Relay) advance(now time.Time, top int64) {
	if top > 0 {
		r.recent = append(r.recent, relayedAt{now, top})
	}
	settled := 0
	for settled < len(r.recent) && now.Sub(r.recent[settled].at) >= r.cfg.Settle {
		r.cursor = max(r.cursor, r.recent[settled].top)
		settled++
	}
	r.recent = append(r.recent[:0], r.recent[settled:]...)
}

// RelayOnce relays one batch from the start of the outbox and returns how
// many events it moved.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	n, _, _, err := r.outbox.RelayOutbox(ctx, 0, r.cfg.Batch, r.publish)
	r.relayed.Add(float64(n))
	return n, err
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
	futures := make([]njs.PubAckFuture, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		if len(m.Events) == 0 {
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
			return fmt.Errorf("publish message %s: %w", m.ID, err)
		}
		futures = append(futures, f)
	}
	return awaitAcks(ctx, futures, nil)
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

// awaitAcks waits for every future and returns the first error; dup, when
// not nil, is told how many of the messages the stream already had.
func awaitAcks(ctx context.Context, futures []njs.PubAckFuture, dup *int) error {
	var first error
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if dup != nil && ack.Duplicate {
				*dup++
			}
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
	var d dto.Metric
	r.relayed.Write(&d)
	return int64(d.GetCounter().GetValue())
}
