package events

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Stream is the events stream.
	Stream StreamConfig
	// Guard, if set, checks before every batch that the stream is the one
	// the database is bound to; when it is not, the batch is refused with
	// EOVERLOADED and nothing is published. Default nil: no check
	// (holdfast serve always sets one).
	Guard *Guard
	// Window is the most events this process may have sent to the stream
	// and not yet seen stored. A batch that would overflow it is refused at
	// once with EOVERLOADED. Default 16,384.
	Window int
	// AckTimeout bounds the wait for the stream to store a batch, across
	// attempts. Default 5s.
	AckTimeout time.Duration
	// AttemptTimeout bounds one attempt to store a batch; an attempt that
	// gets no answer within it (a NATS node lost) is made again within
	// AckTimeout. Default 2s.
	AttemptTimeout time.Duration
	// MaxSkew is how far from now a client's occurred_at may be. Default 24h.
	MaxSkew time.Duration
	// ClientMaxBytes is how full the stream may be before client events
	// are refused (503): the rest of Stream.MaxBytes is kept for the
	// ledger's events, which the relay publishes and which a flood of
	// client events must not block. Checked against the stream's size read
	// at most RefreshEvery ago. Default 80% of Stream.MaxBytes.
	ClientMaxBytes int64
	// RefreshEvery is how often the stream's size is read for
	// ClientMaxBytes. Default 250ms.
	RefreshEvery time.Duration
	// Stored, if set, records the events of a keyed batch that the stream
	// stored before the batch was refused, and a retry with the key
	// publishes only the others: a retry stays idempotent past the stream's
	// duplicate window. Default nil: the duplicate window alone.
	Stored StoredEvents
	// Logger receives refusals. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the publisher's metrics. Default: none.
	Registerer prometheus.Registerer
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c PublisherConfig) WithDefaults() PublisherConfig {
	c.Stream = c.Stream.WithDefaults()
	if c.Window == 0 {
		c.Window = 16384
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 2 * time.Second
	}
	if c.MaxSkew == 0 {
		c.MaxSkew = 24 * time.Hour
	}
	if c.ClientMaxBytes == 0 {
		c.ClientMaxBytes = c.Stream.MaxBytes / 5 * 4
	}
	if c.RefreshEvery == 0 {
		c.RefreshEvery = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// StoredEvents is where a keyed batch's stored events are recorded
// (postgres.ClientEventStore), outside the stream's duplicate window.
type StoredEvents interface {
	// StoredClientEvents returns those of ids recorded as stored for tenant.
	StoredClientEvents(ctx context.Context, tenantID string, ids []string) ([]string, error)
	// RecordClientEvents records ids as stored for tenant.
	RecordClientEvents(ctx context.Context, tenantID string, ids []string) error
}

// Publisher ingests client events: it validates a batch, publishes it
// asynchronously within a bounded in-flight window, and returns once the
// stream has stored every event of it. It implements holdfast.EventService.
type Publisher struct {
	cfg      PublisherConfig
	js       njs.JetStream
	inflight atomic.Int64
	size     streamSize

	ingested prometheus.Counter
	refused  *prometheus.CounterVec
	window   prometheus.GaugeFunc
}

var _ holdfast.EventService = (*Publisher)(nil)

// NewPublisher returns a publisher on nc, with its own JetStream context.
func NewPublisher(nc *nats.Conn, cfg PublisherConfig) (*Publisher, error) {
	cfg = cfg.WithDefaults()
	if cfg.Window < holdfast.MaxEventBatch || cfg.AckTimeout <= 0 || cfg.AttemptTimeout <= 0 || cfg.MaxSkew <= 0 || cfg.ClientMaxBytes <= 0 ||
		cfg.ClientMaxBytes > cfg.Stream.MaxBytes || cfg.RefreshEvery <= 0 {
		return nil, fmt.Errorf("events: publisher Window must be at least %d; AckTimeout, AttemptTimeout, MaxSkew and RefreshEvery positive; ClientMaxBytes positive and at most the stream's MaxBytes", holdfast.MaxEventBatch)
	}
	// The window is enforced here, without blocking; the client library's
	// own cap is only a backstop above it.
	// An attempt's acks that never come are given up after AckTimeout.
	js, err := njs.New(nc, njs.WithPublishAsyncMaxPending(2*cfg.Window), njs.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	p := &Publisher{cfg: cfg, js: js}
	p.ingested = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_events_ingested_total", Help: "Client events stored in the events stream."})
	p.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_events_refused_total", Help: "Client events refused with 503, by reason (window: the in-flight window; headroom: the stream past the client events' share; full: the stream's limits; stream: no answer)."}, []string{"reason"})
	p.window = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_events_inflight", Help: "Client events sent to the stream and not yet stored."},
		func() float64 { return float64(p.inflight.Load()) })
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.ingested, p.refused, p.window} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// PublishEvents validates and stores the events, returning their ids. An
// event's id is the client's, or derived from the tenant, the request's
// Idempotency-Key and the event's index (so a retry stores nothing twice
// within the stream's duplicate window, and past it with Stored), or new.
// Ids are deduplicated per tenant: two tenants' events with the same id are
// both stored. Errors: EINVALID for a bad event (naming its index),
// EOVERLOADED when the window is full, the stream holds ClientMaxBytes or
// is full, does not answer in time or is not the one the database is bound
// to; some events of a refused batch may be stored, and a retry with the
// same ids or key stores them once.
func (p *Publisher) PublishEvents(ctx context.Context, tenantID, idempotencyKey string, in []holdfast.EventCreate) ([]string, error) {
	if len(in) == 0 {
		return nil, holdfast.Errorf(holdfast.EINVALID, "no events given")
	}
	if len(in) > holdfast.MaxEventBatch {
		return nil, holdfast.Errorf(holdfast.EINVALID, "at most %d events per request", holdfast.MaxEventBatch)
	}
	events, err := p.envelopes(tenantID, idempotencyKey, in)
	if err != nil {
		return nil, err
	}
	n := int64(len(events))
	if p.inflight.Add(n) > int64(p.cfg.Window) {
		p.inflight.Add(-n)
		p.refused.WithLabelValues("window").Add(float64(n))
		return nil, holdfast.Errorf(holdfast.EOVERLOADED, "too many events are on their way to the log; retry shortly")
	}
	defer p.inflight.Add(-n)

	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	if err := p.checkHeadroom(ctx, n); err != nil {
		return nil, err
	}
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].ID
	}
	done := make([]bool, len(events)) // stored: by a refused try of the same key, or by an attempt of this one
	if idempotencyKey != "" && p.cfg.Stored != nil {
		if err := p.storedBefore(ctx, tenantID, ids, done); err != nil {
			return nil, p.refuse(err)
		}
	}
	stored, err := p.store(ctx, tenantID, events, done)
	if err != nil {
		if idempotencyKey != "" && p.cfg.Stored != nil && len(stored) > 0 {
			p.record(ctx, tenantID, stored)
		}
		return nil, p.refuse(err)
	}
	p.ingested.Add(float64(len(stored)))
	return ids, nil
}

// store publishes the events not yet done and waits until the stream
// stored each, marking it done; it returns the ids it saw stored. An
// attempt that gets no answer (its stream's leader lost, an election under
// way, the connection moving to another server) is made again within ctx
// for the events still not done, with the same message ids, which the
// stream stores once; a full stream, or one that is not the database's, is
// not retried.
func (p *Publisher) store(ctx context.Context, tenantID string, events []holdfast.Event, done []bool) ([]string, error) {
	var stored []string
	backoff := 50 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
		err := p.publish(attempt, tenantID, events, done, func(i int) { done[i] = true; stored = append(stored, events[i].ID) })
		cancel()
		if err == nil || isFull(err) || errors.Is(err, ErrStreamNotBound) || ctx.Err() != nil {
			return stored, err
		}
		p.cfg.Logger.Debug("events: storing again", "err", err)
		if !lifecycle.Sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
			return stored, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// publish makes one attempt to store the events not done, calling stored
// with the index of each the stream acknowledged.
func (p *Publisher) publish(ctx context.Context, tenantID string, events []holdfast.Event, done []bool, stored func(i int)) error {
	if p.cfg.Guard != nil {
		if _, err := p.cfg.Guard.Check(ctx, p.cfg.Stream.Name); err != nil {
			return err
		}
	}
	futures := make([]njs.PubAckFuture, len(events))
	var buf []byte
	var err error
	for i := range events {
		if done[i] {
			continue
		}
		e := &events[i]
		buf = appendEvent(buf[:0], e)
		msg := &nats.Msg{Subject: p.cfg.Stream.Subject(tenantID, e.Type), Data: append([]byte(nil), buf...)}
		if futures[i], err = p.js.PublishMsgAsync(msg, njs.WithMsgID(clientMsgID(tenantID, e.ID))); err != nil {
			err = fmt.Errorf("publish: %w", err)
			break
		}
	}
	if ackErr := awaitStored(ctx, futures, stored); err == nil {
		err = ackErr
	}
	return err
}

// envelopes validates a batch and returns its events, each with its id.
func (p *Publisher) envelopes(tenantID, idempotencyKey string, in []holdfast.EventCreate) ([]holdfast.Event, error) {
	now := p.cfg.Now().UTC()
	events := make([]holdfast.Event, len(in))
	for i := range in {
		e := &in[i]
		if err := e.Validate(); err != nil {
			return nil, indexed(err, i)
		}
		at := now
		if e.OccurredAt != nil {
			at = e.OccurredAt.UTC()
			if at.Before(now.Add(-p.cfg.MaxSkew)) || at.After(now.Add(p.cfg.MaxSkew)) {
				return nil, indexed(holdfast.Errorf(holdfast.EINVALID, "occurred_at must be within %s of now", p.cfg.MaxSkew), i)
			}
		}
		id := e.ID
		switch {
		case id != "":
			id = holdfast.CanonicalID(id)
		case idempotencyKey != "":
			id = derivedID(tenantID, idempotencyKey, i)
		default:
			id = uuid.Must(uuid.NewV7()).String()
		}
		events[i] = holdfast.Event{ID: id, Type: e.Type, Version: holdfast.EventVersion, Source: holdfast.SourceClient,
			TenantID: tenantID, OccurredAt: at, Data: e.Properties}
	}
	return events, nil
}

// storedBefore marks in done the ids recorded as stored by an earlier,
// refused try of the same key.
func (p *Publisher) storedBefore(ctx context.Context, tenantID string, ids []string, done []bool) error {
	stored, err := p.cfg.Stored.StoredClientEvents(ctx, tenantID, ids)
	if err != nil {
		return fmt.Errorf("stored client events: %w", err)
	}
	set := make(map[string]bool, len(stored))
	for _, id := range stored {
		set[id] = true
	}
	for i, id := range ids {
		done[i] = set[id]
	}
	return nil
}

// record records the events of a refused keyed batch that the stream
// stored. If it fails, a retry within the duplicate window still stores
// them once; one after it would store them again, so it is logged.
func (p *Publisher) record(ctx context.Context, tenantID string, ids []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.cfg.Stored.RecordClientEvents(ctx, tenantID, ids); err != nil {
		p.cfg.Logger.Error("client events: recording those stored of a refused batch; a retry past the duplicate window would store them again",
			"tenant", tenantID, "events", len(ids), "err", err)
	}
}

// checkHeadroom refuses a batch of n client events while the stream holds
// ClientMaxBytes or more: the rest is the ledger events' reserve.
func (p *Publisher) checkHeadroom(ctx context.Context, n int64) error {
	bytes, err := p.size.read(ctx, p.js, p.cfg.Stream.Name, p.cfg.RefreshEvery)
	if err != nil {
		return p.refuse(err)
	}
	if bytes < p.cfg.ClientMaxBytes {
		return nil
	}
	p.refused.WithLabelValues("headroom").Add(float64(n))
	return holdfast.Errorf(holdfast.EOVERLOADED, "the event log is near its limit and keeps the rest for ledger events; retry later")
}

// streamSize is the stream's size in bytes, read at most every so often.
type streamSize struct {
	mu    sync.Mutex
	at    time.Time
	bytes int64
}

func (s *streamSize) read(ctx context.Context, js njs.JetStream, name string, every time.Duration) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.at) >= every {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("stream %s: %w", name, err)
		}
		s.at, s.bytes = now, int64(st.CachedInfo().State.Bytes)
	}
	return s.bytes, nil
}

// refuse turns a failure to store into EOVERLOADED: a full stream, a
// stream that does not answer, a lost connection; each is the log pushing
// back, and the producer should retry later.
func (p *Publisher) refuse(err error) error {
	reason, msg := "stream", "the event log cannot take events now; retry shortly"
	if isFull(err) {
		reason, msg = "full", "the event log is full; retry later"
	}
	p.refused.WithLabelValues(reason).Inc()
	p.cfg.Logger.Warn("events refused", "err", err)
	return &holdfast.Error{Code: holdfast.EOVERLOADED, Message: msg, Err: err}
}

// isFull reports whether the server refused a message for the stream's
// limits (discard-new: "maximum bytes exceeded", "maximum messages exceeded").
func isFull(err error) bool {
	s := err.Error()
	return strings.Contains(s, "maximum bytes") || strings.Contains(s, "maximum messages") || strings.Contains(s, "resource limits")
}

// clientMsgID is the stream's deduplication id of a client event: the
// stream is shared by every tenant and a client chooses its event ids, so
// the id is scoped by the tenant; otherwise one tenant's id would make the
// stream drop another tenant's event as a duplicate.
func clientMsgID(tenantID, eventID string) string { return tenantID + "/" + eventID }

// derivedID returns a UUID (version 8, RFC 9562) that is a function of the
// tenant, the Idempotency-Key and the event's index.
func derivedID(tenantID, key string, i int) string {
	h := sha256.New()
	h.Write([]byte(tenantID))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(i)))
	var u uuid.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}

// indexed names the failing event in a validation error.
func indexed(err error, i int) error {
	var e *holdfast.Error
	if errors.As(err, &e) {
		return &holdfast.Error{Code: e.Code, Message: fmt.Sprintf("events[%d]: %s", i, e.Message), Extensions: map[string]any{"index": i}}
	}
	return err
}
