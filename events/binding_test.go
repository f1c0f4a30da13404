package events_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// guard returns a guard of the streams on nc against the env's database.
func (e *env) guard(t *testing.T, nc *natsconn.Conn) *events.Guard {
	t.Helper()
	g, err := events.NewGuard(nc.JS, e.states, events.GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// publish stores n client events of the env's tenant in the stream on nc.
func (e *env) publish(t *testing.T, nc *natsconn.Conn, guard *events.Guard, n int) error {
	t.Helper()
	p, err := events.NewPublisher(nc.NC, events.PublisherConfig{Stream: e.stream, Guard: guard, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]holdfast.EventCreate, n)
	for i := range batch {
		batch[i] = holdfast.EventCreate{Type: "page.view"}
	}
	_, err = p.PublishEvents(t.Context(), e.tenant, "", batch)
	return err
}

// guardedGroup is the env's audit group on the stream on nc, with guard.
func (e *env) guardedGroup(t *testing.T, nc *natsconn.Conn, guard *events.Guard) *events.Group {
	t.Helper()
	g, err := events.NewGroup(nc.JS, e.audit, e.states, nil, events.GroupConfig{Name: postgres.AuditGroup, Stream: e.stream, Guard: guard,
		Logger: quiet, FetchWait: 100 * time.Millisecond, StatePoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// streamState returns the messages of the stream on nc, and whether it has
// a consumer named audit.
func (e *env) streamState(t *testing.T, nc *natsconn.Conn) (uint64, bool) {
	t.Helper()
	s, err := nc.JS.Stream(t.Context(), e.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Consumer(t.Context(), postgres.AuditGroup)
	if err != nil && !errors.Is(err, njs.ErrConsumerNotFound) {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs, err == nil
}

// mustBeRefusal fails t unless err refuses a stream that is not the one
// bound, saying what to do.
func mustBeRefusal(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, events.ErrStreamNotBound) {
		t.Fatalf("%s: %v, want ErrStreamNotBound", what, err)
	}
	for _, want := range []string{"--nats-url", "holdfast adopt-stream"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: the refusal does not mention %s: %v", what, want, err)
		}
	}
}

// A stream that replaced the one the database's progress was recorded in
// (another replica's embedded server, a lost data directory) numbers its
// messages from 1 again, so consuming it would acknowledge its first events
// as applied already. A group refuses to start on it and acknowledges
// nothing, the relay and the publisher put nothing in it, and a missing
// stream is not created anew; once adopted, every event in it is applied.
func TestGuard_ReplacedStreamIsRefusedUntilAdopted(t *testing.T) {
	t.Parallel()
	e := setup(t)
	first := e.guard(t, e.nats)
	if err := e.publish(t, e.nats, first, 10); err != nil {
		t.Fatal(err)
	}
	g := e.guardedGroup(t, e.nats, first)
	e.start(t, g)
	eventually(t, "the first stream audited", func() bool { return e.auditCount(t) == 10 })
	g.Stop()

	// Another server with a stream of the same name, holding 5 events.
	other, err := natsconn.Open(t.Context(), natsconn.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	if _, err := events.EnsureStream(t.Context(), other.JS, e.stream); err != nil {
		t.Fatal(err)
	}
	if err := e.publish(t, other, nil, 5); err != nil {
		t.Fatal(err)
	}
	guard := e.guard(t, other)
	mustBeRefusal(t, "group start", e.guardedGroup(t, other, guard).Start(t.Context()))
	err = e.publish(t, other, guard, 1)
	if !holdfast.IsCode(err, holdfast.EOVERLOADED) || !errors.Is(err, events.ErrStreamNotBound) {
		t.Fatalf("publish into the other stream: %v, want EOVERLOADED for ErrStreamNotBound", err)
	}
	e.mustAccount(t, false) // an event in the outbox
	relay, err := events.NewRelay(e.db, other.JS, events.RelayConfig{Stream: e.stream, Guard: guard, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = relay.RelayOnce(t.Context())
	mustBeRefusal(t, "relay", err)
	if n := e.outboxLen(t); n != 1 {
		t.Fatalf("outbox holds %d rows, want the 1 the relay did not publish", n)
	}
	if msgs, consumer := e.streamState(t, other); msgs != 5 || consumer {
		t.Fatalf("the other stream holds %d messages (want 5) and a consumer (%v): something was consumed or published", msgs, consumer)
	}
	if got := e.auditCount(t); got != 10 {
		t.Fatalf("audit holds %d records, want 10", got)
	}

	// A server without the stream: it is not created anew.
	empty, err := natsconn.Open(t.Context(), natsconn.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(empty.Close)
	_, err = e.guard(t, empty).Ensure(t.Context(), e.stream.Name, func(ctx context.Context) error {
		_, err := events.EnsureStream(ctx, empty.JS, e.stream)
		return err
	})
	mustBeRefusal(t, "ensure a missing stream", err)
	if _, err := empty.JS.Stream(t.Context(), e.stream.Name); !errors.Is(err, njs.ErrStreamNotFound) {
		t.Fatalf("the missing stream was created: %v", err)
	}

	// Adopted, knowingly: every event of the new stream is applied.
	ad, err := events.AdoptStream(t.Context(), other.JS, e.states, e.stream.Name, []string{postgres.AuditGroup})
	if err != nil {
		t.Fatal(err)
	}
	if ad.Previous == "" || ad.Previous == ad.Identity || len(ad.Groups) != 1 {
		t.Fatalf("adoption = %+v", ad)
	}
	if again, err := events.AdoptStream(t.Context(), other.JS, e.states, e.stream.Name, []string{postgres.AuditGroup}); err != nil || len(again.Groups) != 0 {
		t.Fatalf("adopting the bound stream again = %+v, %v; want nothing reset", again, err)
	}
	guard = e.guard(t, other)
	relay, err = events.NewRelay(e.db, other.JS, events.RelayConfig{Stream: e.stream, Guard: guard, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, e.guardedGroup(t, other, guard), relay)
	eventually(t, "the adopted stream audited", func() bool { return e.auditCount(t) == 16 })
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}

// The relay also publishes the receipt pipeline's jobs: a jobs stream that
// was deleted and created anew under a running relay (its identity is its
// creation time: the receipts package keeps no id in it) gets no job once
// the guard's Recheck has passed, and the job stays in the outbox.
func TestRelay_RefusesAReplacedJobsStream(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := receipts.Config{Memory: true}
	create := func(ctx context.Context) error {
		_, err := receipts.EnsureStreams(ctx, e.nats.JS, cfg)
		return err
	}
	var clock atomic.Int64 // the guard's time, in seconds
	guard, err := events.NewGuard(e.nats.JS, e.states, events.GuardConfig{Recheck: time.Second,
		Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guard.Ensure(t.Context(), holdfast.JobsStream, create); err != nil {
		t.Fatal(err)
	}
	if err := e.nats.JS.DeleteStream(t.Context(), holdfast.JobsStream); err != nil {
		t.Fatal(err)
	}
	clock.Add(1)
	if err := create(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic)
		VALUES (gen_random_uuid(), $1, 'receipt.process', now(), '{}', 'jobs')`, e.tenant); err != nil {
		t.Fatal(err)
	}
	relay, err := events.NewRelay(e.db, e.nats.JS, events.RelayConfig{Stream: e.stream, Guard: guard, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = relay.RelayOnce(t.Context())
	mustBeRefusal(t, "relay a job", err)
	if n := e.outboxLen(t); n != 1 {
		t.Fatalf("outbox holds %d rows, want the job", n)
	}
}
