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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Publisher ingests client events: it validates a batch, publishes it
// asynchronously within a bounded in-flight window, and returns once the
// stream has stored every event of it. It implements holdfast.EventService.
type Publisher struct {
	cfg      PublisherConfig
	js       njs.JetStream
	inflight atomic.Int64

	ingested prometheus.Counter
	refused  *prometheus.CounterVec
	window   prometheus.GaugeFunc
}

var _ holdfast.EventService = (*Publisher)(nil)

// NewPublisher returns a publisher on nc, with its own JetStream context.
func NewPublisher(nc *nats.Conn, cfg PublisherConfig) (*Publisher, error) {
	cfg = cfg.WithDefaults()
	if cfg.Window < holdfast.MaxEventBatch || cfg.AckTimeout <= 0 || cfg.AttemptTimeout <= 0 || cfg.MaxSkew <= 0 {
		return nil, fmt.Errorf("events: publisher Window must be at least %d; AckTimeout, AttemptTimeout and MaxSkew positive", holdfast.MaxEventBatch)
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
		Name: "holdfast_events_refused_total", Help: "Client events refused with 503, by reason (window: the in-flight window; full: the stream's limits; stream: no answer)."}, []string{"reason"})
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
// within the stream's duplicate window), or new. Ids are deduplicated per
// tenant: two tenants' events with the same id are both stored. Errors:
// EINVALID for a bad event (naming its index), EOVERLOADED when the window
// or the stream is full, the stream does not answer in time or is not the
// one the database is bound to; some events of a refused batch may be
// stored, and a retry with the same ids or key stores them once.
func (p *Publisher) PublishEvents(ctx context.Context, tenantID, idempotencyKey string, in []holdfast.EventCreate) ([]string, error) {
	if len(in) == 0 {
		return nil, holdfast.Errorf(holdfast.EINVALID, "no events given")
	}
	if len(in) > holdfast.MaxEventBatch {
		return nil, holdfast.Errorf(holdfast.EINVALID, "at most %d events per request", holdfast.MaxEventBatch)
	}
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

	n := int64(len(events))
	if p.inflight.Add(n) > int64(p.cfg.Window) {
		p.inflight.Add(-n)
		p.refused.WithLabelValues("window").Add(float64(n))
		return nil, holdfast.Errorf(holdfast.EOVERLOADED, "too many events are on their way to the log; retry shortly")
	}
	defer p.inflight.Add(-n)

	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	if err := p.store(ctx, tenantID, events); err != nil {
		return nil, p.refuse(err)
	}
	p.ingested.Add(float64(n))
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].ID
	}
	return ids, nil
}

// store publishes the events and waits until the stream stored each. An
// attempt that gets no answer (its stream's leader lost, an election under
// way, the connection moving to another server) is made again within ctx,
// with the same message ids, which the stream stores once; a full stream,
// or one that is not the database's, is not retried.
func (p *Publisher) store(ctx context.Context, tenantID string, events []holdfast.Event) error {
	backoff := 50 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
		err := p.publish(attempt, tenantID, events)
		cancel()
		if err == nil || isFull(err) || errors.Is(err, ErrStreamNotBound) || ctx.Err() != nil {
			return err
		}
		p.cfg.Logger.Debug("events: storing again", "err", err)
		if !lifecycle.Sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// publish makes one attempt to store the events.
func (p *Publisher) publish(ctx context.Context, tenantID string, events []holdfast.Event) error {
	if p.cfg.Guard != nil {
		if _, err := p.cfg.Guard.Check(ctx, p.cfg.Stream.Name); err != nil {
			return err
		}
	}
	futures := make([]njs.PubAckFuture, 0, len(events))
	var buf []byte
	for i := range events {
		e := &events[i]
		buf = appendEvent(buf[:0], e)
		msg := &nats.Msg{Subject: p.cfg.Stream.Subject(tenantID, e.Type), Data: append([]byte(nil), buf...)}
		f, err := p.js.PublishMsgAsync(msg, njs.WithMsgID(clientMsgID(tenantID, e.ID)))
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
	}
	return awaitAcks(ctx, futures, nil)
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
