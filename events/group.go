package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// Applier applies a batch of events exactly once: in one transaction with
// the record of their stream sequences, skipping those applied before, and
// a delivery that is twice in the batch (same sequence and index) once.
type Applier interface {
	ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error
}

// States is the consumer groups' shared state (postgres.ConsumerStore).
type States interface {
	// EnsureGroup creates the group's state if it has none, recording the
	// stream it consumes and that stream's identity where none is recorded,
	// and returns the state.
	EnsureGroup(ctx context.Context, name, stream, identity string) (*holdfast.ConsumerGroupState, error)
	State(ctx context.Context, name string) (*holdfast.ConsumerGroupState, error)
	Pause(ctx context.Context, name string, until time.Time, reason string) error
	Resume(ctx context.Context, name string) error
	Prune(ctx context.Context, name string, floor uint64) error
}

// GroupConfig configures a consumer group.
type GroupConfig struct {
	// Name of the group and of its durable consumer. Required.
	Name string
	// Stream is the events stream.
	Stream StreamConfig
	// Guard, if set, checks that the stream is the one the database is
	// bound to: at start, where the group's progress must be recorded in
	// that stream too, and before each batch is applied. Default nil: no
	// check (holdfast serve always sets one).
	Guard *Guard
	// MaxBatch is the most messages fetched at once (Kafka's
	// max.poll.records), and the most events applied in one transaction,
	// but for a message that holds more (a group-commit batch's events,
	// applied whole). Default 200.
	MaxBatch int
	// AckWait is how long a delivered event may stay unacknowledged before
	// the server delivers it again (Kafka's max.poll.interval.ms); a batch
	// being worked on sends in-progress heartbeats that extend it. Default 30s.
	AckWait time.Duration
	// MaxAckPending caps events delivered and not yet acknowledged, across
	// all replicas. Default 1000.
	MaxAckPending int
	// Workers is how many batches this replica works on at once. Default 1.
	Workers int
	// FetchWait is how long one fetch waits for events. Default 1s.
	FetchWait time.Duration
	// ApplyTimeout bounds applying one batch; past it, the downstream is
	// taken to be overwhelmed. Default 10s.
	ApplyTimeout time.Duration
	// Cooldown is how long the group pauses itself when its downstream is
	// overwhelmed (its calls time out, its pool is exhausted). Default 5s.
	Cooldown time.Duration
	// StatePoll is how often a replica re-reads the shared pause state, so
	// a pause reaches every replica within it. Default 1s.
	StatePoll time.Duration
	// Delay is added per event applied, to simulate a slow downstream in
	// benchmarks and the lab. Default 0.
	Delay time.Duration
	// Yield, if set, reports that the service's request path is under
	// pressure (the ledger writer's queue is deep). While it does, the group
	// waits YieldDelay before each fetch (and each transaction of a fetch
	// that needs several): the requests get the cores, the
	// log absorbs the events (lag grows, and shows it), and the group
	// catches up once the pressure is gone. It still applies a batch per
	// YieldDelay, so it is slowed, never stopped. Default nil: never yields.
	Yield func() bool
	// YieldDelay is the wait before each fetch while Yield reports
	// pressure. Default 100ms.
	YieldDelay time.Duration
	// Logger receives the group's errors. Default slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c GroupConfig) WithDefaults() GroupConfig {
	c.Stream = c.Stream.WithDefaults()
	if c.MaxBatch == 0 {
		c.MaxBatch = 200
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.FetchWait == 0 {
		c.FetchWait = time.Second
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.Cooldown == 0 {
		c.Cooldown = 5 * time.Second
	}
	if c.YieldDelay == 0 {
		c.YieldDelay = 100 * time.Millisecond
	}
	if c.StatePoll == 0 {
		c.StatePoll = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c GroupConfig) validate() error {
	if c.Name == "" {
		return errors.New("events: group Name is required")
	}
	if c.MaxBatch < 1 || c.MaxAckPending < c.MaxBatch || c.Workers < 1 || c.AckWait < time.Second ||
		c.FetchWait < 10*time.Millisecond || c.ApplyTimeout <= 0 || c.Cooldown <= 0 || c.StatePoll <= 0 || c.Delay < 0 || c.YieldDelay < 0 {
		return errors.New("events: group MaxBatch, Workers, FetchWait, ApplyTimeout, Cooldown and StatePoll must be positive, Delay and YieldDelay not negative, AckWait at least 1s, MaxAckPending at least MaxBatch")
	}
	return nil
}

// Group is one consumer group in this replica: workers that fetch bounded
// batches from the group's durable pull consumer (shared by every
// replica), apply them exactly once, and acknowledge them only after the
// effect committed. Pausing stops the fetching, as a Kafka client's pause
// does: it works on every server version (server-side consumer pause needs
// 2.11), and what is not fetched stays in the stream, counted as pending.
type Group struct {
	cfg     GroupConfig
	js      njs.JetStream
	applier Applier
	states  States
	metrics *GroupMetrics

	cons     njs.Consumer
	identity string // of the stream the group's progress is counted in; "" without a Guard
	run      lifecycle.Runner

	mu       sync.Mutex
	state    *holdfast.ConsumerGroupState
	stateAt  time.Time
	stateErr error
}

// NewGroup returns a consumer group; it does nothing until Start. metrics
// may be nil.
func NewGroup(js njs.JetStream, applier Applier, states States, metrics *GroupMetrics, cfg GroupConfig) (*Group, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Group{cfg: cfg, js: js, applier: applier, states: states, metrics: metrics}, nil
}

// Name returns the group's name.
func (g *Group) Name() string { return g.cfg.Name }

// Config returns the group's configuration with its defaults.
func (g *Group) Config() GroupConfig { return g.cfg }

// consumerConfig is the group's durable consumer.
func (g *Group) consumerConfig() njs.ConsumerConfig {
	return njs.ConsumerConfig{
		Durable:       g.cfg.Name,
		Description:   "Holdfast consumer group " + g.cfg.Name,
		DeliverPolicy: njs.DeliverAllPolicy,
		AckPolicy:     njs.AckExplicitPolicy,
		AckWait:       g.cfg.AckWait,
		MaxDeliver:    -1, // an event is retried until applied: the log never skips one
		MaxAckPending: g.cfg.MaxAckPending,
		MaxWaiting:    512,
		Replicas:      g.cfg.Stream.Replicas, // as many copies as the stream's: a node's loss loses no progress
	}
}

// Ensure checks the stream (with a Guard), creates or updates the group's
// shared state and its durable consumer. It returns a *StreamMismatchError
// when the stream, or the stream the group's progress is recorded in, is
// not the one on the server: nothing is consumed then.
func (g *Group) Ensure(ctx context.Context) error {
	stream := g.cfg.Stream.Name
	identity := ""
	if g.cfg.Guard != nil {
		var err error
		if identity, err = g.cfg.Guard.Check(ctx, stream); err != nil {
			return fmt.Errorf("events: consumer group %s: %w", g.cfg.Name, err)
		}
	}
	st, err := g.states.EnsureGroup(ctx, g.cfg.Name, stream, identity)
	if err != nil {
		return err
	}
	if identity != "" && (st.Stream != stream || st.StreamIdentity != identity) {
		return &StreamMismatchError{Stream: stream, Group: g.cfg.Name, BoundStream: st.Stream, Bound: st.StreamIdentity, Found: identity}
	}
	cons, err := g.js.CreateOrUpdateConsumer(ctx, stream, g.consumerConfig())
	if err != nil {
		return fmt.Errorf("events: consumer %s: %w", g.cfg.Name, err)
	}
	g.cons, g.identity = cons, identity
	return nil
}

// Start ensures the consumer, unless Ensure did, and runs the group's
// workers until Stop.
func (g *Group) Start(ctx context.Context) error {
	if g.cons == nil {
		if err := g.Ensure(ctx); err != nil {
			return err
		}
	}
	ctx = g.run.Start(ctx)
	for i := 0; i < g.cfg.Workers; i++ {
		g.run.Go(func() { g.work(ctx) })
	}
	g.run.Go(func() { g.prune(ctx) })
	return nil
}

// Stop stops fetching and waits for the batches in hand to be applied and
// acknowledged (or given back). Idempotent; safe before Start.
func (g *Group) Stop() { g.run.Stop() }

// paused reports whether the group is paused now, from the shared state
// read at most StatePoll ago.
func (g *Group) paused(ctx context.Context) (bool, time.Duration) {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == nil || now.Sub(g.stateAt) >= g.cfg.StatePoll {
		st, err := g.states.State(ctx, g.cfg.Name)
		g.stateAt, g.stateErr = now, err
		if err == nil {
			g.state = st
		}
	}
	if g.state == nil {
		// No state could be read: do not run blind; wait and ask again.
		return true, g.cfg.StatePoll
	}
	if !g.state.PausedAt(now) {
		return false, 0
	}
	wait := g.cfg.StatePoll
	if !g.state.Paused && g.state.PausedUntil != nil {
		wait = min(wait, g.state.PausedUntil.Sub(now))
	}
	return true, max(wait, time.Millisecond)
}

// forgetState makes the next paused call read the shared state.
func (g *Group) forgetState() {
	g.mu.Lock()
	g.state = nil
	g.mu.Unlock()
}

func (g *Group) work(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if p, wait := g.paused(ctx); p {
			g.metrics.paused(g.cfg.Name, true)
			lifecycle.Sleep(ctx, wait)
			continue
		}
		g.metrics.paused(g.cfg.Name, false)
		if g.cfg.Yield != nil && g.cfg.Yield() && !lifecycle.Sleep(ctx, g.cfg.YieldDelay) {
			return
		}
		batch, err := g.cons.Fetch(g.cfg.MaxBatch, njs.FetchMaxWait(g.cfg.FetchWait))
		if err != nil {
			if ctx.Err() == nil {
				backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
				g.cfg.Logger.Warn("consumer fetch", "group", g.cfg.Name, "err", err, "retry_in", backoff)
				lifecycle.Sleep(ctx, backoff)
			}
			continue
		}
		var msgs []njs.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, njs.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			g.cfg.Logger.Warn("consumer fetch", "group", g.cfg.Name, "err", err)
		}
		if len(msgs) == 0 {
			continue
		}
		backoff = 0
		g.handle(ctx, msgs)
	}
}

// handle applies one fetched batch and acknowledges it, or gives it back.
// A stop does not cut it short: it runs under its own ApplyTimeout.
func (g *Group) handle(stopping context.Context, msgs []njs.Msg) {
	start := g.cfg.Now()
	// Read every message; a message holds one event or a group-commit
	// batch's, and is applied whole. A message delivered twice is applied
	// once: the Applier skips what it applied before and applies a delivery
	// twice in one batch once.
	var ms []njs.Msg
	var events [][]holdfast.EventDelivery // events[i] are ms[i]'s
	for _, m := range msgs {
		ds, err := ParseDelivery(m)
		if err != nil {
			// Not an event of ours: nothing could ever apply it.
			g.cfg.Logger.Error("consumer: unreadable event terminated", "group", g.cfg.Name, "err", err)
			m.TermWithReason("unreadable event")
			continue
		}
		for i := range ds {
			ds[i].StreamID = g.identity
		}
		ms, events = append(ms, m), append(events, ds)
	}
	// Apply in chunks of about MaxBatch events, whole messages each, with
	// in-progress heartbeats for the messages not yet acknowledged, and a
	// yield to the requests before every chunk after the first, as before
	// every fetch.
	var acked atomic.Int64 // ms[:acked] are acknowledged
	stopBeat := lifecycle.Heartbeat(g.cfg.AckWait/3, func() {
		for _, m := range ms[acked.Load():] {
			m.InProgress()
		}
	})
	defer stopBeat()
	for i := 0; i < len(ms); {
		if i > 0 && g.cfg.Yield != nil && g.cfg.Yield() && !lifecycle.Sleep(stopping, g.cfg.YieldDelay) {
			g.giveBack(stopping, ms[i:], errStopping)
			return
		}
		var batch []holdfast.EventDelivery
		j := i
		for ; j < len(ms) && (j == i || len(batch)+len(events[j]) <= g.cfg.MaxBatch); j++ {
			batch = append(batch, events[j]...)
		}
		if !g.apply(stopping, start, batch, ms[i:j], ms[i:]) {
			return
		}
		acked.Store(int64(j))
		i, start = j, g.cfg.Now()
	}
}

// apply applies one chunk of a fetched batch and acknowledges its
// deliveries (chunk). If it fails, it gives back the chunk and the rest of
// the batch (unacked, which begins with chunk) and returns false.
func (g *Group) apply(stopping context.Context, start time.Time, batch []holdfast.EventDelivery, chunk, unacked []njs.Msg) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stopping), g.cfg.ApplyTimeout)
	defer cancel()
	err := g.checkStream(ctx)
	if err == nil {
		err = g.slowDownstream(ctx, stopping, len(batch))
	}
	if err == nil {
		err = g.applier.ApplyEvents(ctx, batch)
	}
	if err == nil {
		for _, m := range chunk {
			m.Ack() // a lost ack only means a redelivery, which changes nothing
		}
		g.metrics.applied(g.cfg.Name, len(batch), g.cfg.Now().Sub(start))
		return true
	}
	g.giveBack(stopping, unacked, err)
	return false
}

// giveBack returns deliveries that could not be applied because of err:
// at once on a stop, after the cooldown (the group paused) when the
// downstream is overwhelmed, else after 1–3 s of jitter.
func (g *Group) giveBack(stopping context.Context, msgs []njs.Msg, err error) {
	if errors.Is(err, errStopping) {
		for _, m := range msgs {
			m.Nak()
		}
		return
	}
	if Overwhelmed(err) {
		until := g.cfg.Now().Add(g.cfg.Cooldown)
		g.cfg.Logger.Warn("consumer group pauses itself: its downstream is overwhelmed", "group", g.cfg.Name, "err", err, "until", until)
		g.metrics.autoPause(g.cfg.Name)
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(stopping), 5*time.Second)
		if perr := g.states.Pause(pctx, g.cfg.Name, until, "auto: downstream overwhelmed: "+err.Error()); perr != nil {
			g.cfg.Logger.Warn("consumer auto-pause", "group", g.cfg.Name, "err", perr)
		}
		pcancel()
		g.forgetState()
		for _, m := range msgs {
			m.NakWithDelay(g.cfg.Cooldown)
		}
		return
	}
	g.cfg.Logger.Error("consumer apply; the batch will be delivered again", "group", g.cfg.Name, "err", err)
	g.metrics.failed(g.cfg.Name)
	// Full jitter, so replicas that failed together do not retry together.
	for _, m := range msgs {
		m.NakWithDelay(time.Second + rand.N(2*time.Second))
	}
}

var errStopping = errors.New("stopping")

// checkStream returns an error unless the stream is still the one the group
// started on and the database is bound to (with a Guard, checked at most
// its Recheck ago).
func (g *Group) checkStream(ctx context.Context) error {
	if g.cfg.Guard == nil {
		return nil
	}
	identity, err := g.cfg.Guard.Check(ctx, g.cfg.Stream.Name)
	if err != nil {
		return err
	}
	if identity != g.identity {
		return &StreamMismatchError{Stream: g.cfg.Stream.Name, Group: g.cfg.Name, Bound: g.identity, Found: identity}
	}
	return nil
}

// slowDownstream waits Delay per event (benchmarks, lab), or until a stop.
func (g *Group) slowDownstream(ctx, stopping context.Context, n int) error {
	if g.cfg.Delay == 0 {
		return nil
	}
	t := time.NewTimer(g.cfg.Delay * time.Duration(n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-stopping.Done():
		return errStopping
	case <-ctx.Done():
		return ctx.Err()
	}
}

// prune raises the group's floor to the consumer's acknowledgement floor
// now and then, so the record of applied sequences stays small.
func (g *Group) prune(ctx context.Context) {
	every := 10 * g.cfg.StatePoll
	for lifecycle.Sleep(ctx, every+rand.N(every)) {
		info, err := g.cons.Info(ctx)
		if err != nil {
			continue
		}
		if err := g.states.Prune(ctx, g.cfg.Name, info.AckFloor.Stream); err != nil && ctx.Err() == nil {
			g.cfg.Logger.Warn("consumer prune", "group", g.cfg.Name, "err", err)
		}
	}
}

// Overwhelmed reports whether err says the downstream cannot keep up: a
// timeout (of the batch, a statement, a connection acquire) or a database
// refusing connections.
func Overwhelmed(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57014", "53300", "53400": // query_canceled (statement timeout), too_many_connections, configuration_limit_exceeded
			return true
		}
	}
	return false
}
