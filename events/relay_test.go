package events_test

import (
	"context"
	"strings"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/testkit/promtest"
)

// blockedEnv is an env whose events stream is 1 MiB and full of filler,
// beside a jobs stream of its own.
type blockedEnv struct {
	*env
	jobsStream, jobsSubject string
	filler2K                uint64 // a filler message of 2 KiB
}

func setupBlocked(t *testing.T) *blockedEnv {
	t.Helper()
	e := setup(t)
	e.stream.Name, e.stream.MaxBytes = e.stream.Name+"_small", 1<<20
	if _, err := events.EnsureStream(t.Context(), e.nats.JS, e.stream); err != nil {
		t.Fatal(err)
	}
	b := &blockedEnv{env: e, jobsStream: e.stream.Name + "_jobs", jobsSubject: e.stream.Name + "_jobs.receipt"}
	if _, err := e.nats.JS.CreateStream(t.Context(), njs.StreamConfig{Name: b.jobsStream, Subjects: []string{b.jobsSubject},
		Storage: njs.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	b.filler2K = b.fill(t)
	return b
}

// fill publishes filler into the events stream until it refuses even a
// small message, and returns the sequence of a 2 KiB filler message.
func (b *blockedEnv) fill(t *testing.T) uint64 {
	t.Helper()
	var mid uint64
	for _, size := range []int{16 << 10, 2 << 10, 64} {
		filler := []byte(strings.Repeat("x", size))
		for i := 0; ; i++ {
			ack, err := b.nats.JS.Publish(t.Context(), b.stream.Name+".filler.x", filler)
			if err != nil {
				break // full for this size
			}
			if size == 2<<10 {
				mid = ack.Sequence
			}
			if i > 1000 {
				t.Fatal("the 1 MiB stream never filled")
			}
		}
	}
	return mid
}

// unblock purges the filler, making room for the ledger's events.
func (b *blockedEnv) unblock(t *testing.T) {
	t.Helper()
	s, err := b.nats.JS.Stream(t.Context(), b.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context(), njs.WithPurgeSubject(b.stream.Name+".filler.x")); err != nil {
		t.Fatal(err)
	}
}

// insertJobs queues n jobs in the outbox, as a receipt upload does.
func (b *blockedEnv) insertJobs(t *testing.T, n int) {
	t.Helper()
	if _, err := b.db.Pool.Exec(t.Context(), `INSERT INTO outbox (id, tenant_id, type, occurred_at, data, topic)
		SELECT gen_random_uuid(), $1, 'receipt.process', now(), '{}', 'jobs' FROM generate_series(1, $2)`, b.tenant, n); err != nil {
		t.Fatal(err)
	}
}

func (b *blockedEnv) relay(t *testing.T, reg prometheus.Registerer) *events.Relay {
	t.Helper()
	r, err := events.NewRelay(b.db, b.nats.JS, events.RelayConfig{Stream: b.stream, JobsStream: b.jobsStream, JobsSubject: b.jobsSubject,
		Logger: quiet, Poll: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// msgsOn returns how many messages of the stream are on subjects matching filter.
func (b *blockedEnv) msgsOn(t *testing.T, stream, filter string) uint64 {
	t.Helper()
	s, err := b.nats.JS.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), njs.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func (b *blockedEnv) outboxTopic(t *testing.T, topic string) int64 {
	t.Helper()
	var n int64
	if err := b.db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE topic = $1", topic).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A full events stream does not stall jobs: the events wait in the outbox,
// the relay backs off on that topic alone (and says so), the jobs are
// relayed meanwhile, and the events follow once there is room.
func TestRelay_FullEventsStreamDoesNotStallJobs(t *testing.T) {
	t.Parallel()
	b := setupBlocked(t)
	a, c := b.mustAccount(t, true), b.mustAccount(t, true)
	for i := 0; i < 10; i++ {
		b.mustTransfer(t, a, c, int64(i+1))
	}
	const ledgerEvents = 12 // two accounts, ten transfers
	reg := prometheus.NewRegistry()
	b.start(t, b.relay(t, reg))

	eventually(t, "the events topic backs off", func() bool {
		return promtest.GaugeValue(t, reg, "holdfast_outbox_relay_backoff_seconds", "topic", "events") > 0
	})
	b.insertJobs(t, 7)
	eventually(t, "the jobs are relayed past the blocked events", func() bool {
		return b.msgsOn(t, b.jobsStream, b.jobsSubject) == 7 && b.outboxTopic(t, "jobs") == 0
	})
	if got := b.outboxTopic(t, "events"); got != ledgerEvents {
		t.Fatalf("the outbox holds %d events while their stream is full, want all %d", got, ledgerEvents)
	}
	if got := promtest.GaugeValue(t, reg, "holdfast_outbox_relay_backoff_seconds", "topic", "jobs"); got != 0 {
		t.Fatalf("the jobs topic backs off (%vs) though its stream has room", got)
	}

	b.unblock(t)
	eventually(t, "the events drain once the stream has room", func() bool {
		return b.outboxTopic(t, "events") == 0
	})
	if got := b.msgsOn(t, b.stream.Name, b.stream.Name+"."+b.tenant+".>"); got != ledgerEvents {
		t.Fatalf("the stream holds %d of the tenant's events, want %d", got, ledgerEvents)
	}
	eventually(t, "the events topic flows again", func() bool {
		return promtest.GaugeValue(t, reg, "holdfast_outbox_relay_backoff_seconds", "topic", "events") == 0
	})
}

// A relay restarted while its topic is blocked loses nothing and stores
// nothing twice: the events wait in the outbox (PostgreSQL) across the
// restart and are relayed once the stream has room.
func TestRelay_RestartWhileATopicIsBlockedLosesNothing(t *testing.T) {
	t.Parallel()
	b := setupBlocked(t)
	a, c := b.mustAccount(t, true), b.mustAccount(t, true)
	for i := 0; i < 20; i++ {
		b.mustTransfer(t, a, c, int64(i+1))
	}
	const ledgerEvents = 22
	reg := prometheus.NewRegistry()
	first := b.relay(t, reg)
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first relay fails on the full stream", func() bool {
		return promtest.GaugeValue(t, reg, "holdfast_outbox_relay_backoff_seconds", "topic", "events") > 0
	})
	first.Stop()
	if got := b.outboxTopic(t, "events"); got != ledgerEvents {
		t.Fatalf("after the stop the outbox holds %d, want all %d", got, ledgerEvents)
	}

	second := b.relay(t, nil)
	b.start(t, second)
	b.unblock(t)
	eventually(t, "the restarted relay drains the outbox", func() bool { return b.outboxLen(t) == 0 })
	if got := b.msgsOn(t, b.stream.Name, b.stream.Name+"."+b.tenant+".>"); got != ledgerEvents {
		t.Fatalf("the stream holds %d of the tenant's events, want each of the %d once", got, ledgerEvents)
	}
}

// A round whose stream fills partway deletes the rows it stored: a topic
// blocked for longer than the duplicate window does not store them twice
// once it flows again.
func TestRelay_StreamFullPartwayStoresEachEventOnce(t *testing.T) {
	t.Parallel()
	b := setupBlocked(t)
	a, c := b.mustAccount(t, true), b.mustAccount(t, true)
	for i := 0; i < 30; i++ {
		b.mustTransfer(t, a, c, int64(i+1))
	}
	const ledgerEvents = 32
	// Room for a few events only: a 2 KiB filler message out.
	s, err := b.nats.JS.Stream(t.Context(), b.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(t.Context(), b.filler2K); err != nil {
		t.Fatal(err)
	}
	r := b.relay(t, nil)
	if _, err := r.RelayOnce(t.Context()); err == nil {
		t.Fatal("a round into a stream with room for a few of its events succeeded")
	}
	stored := b.msgsOn(t, b.stream.Name, b.stream.Name+"."+b.tenant+".>")
	if stored == 0 || stored == ledgerEvents {
		t.Fatalf("the stream stored %d of %d events; the test needs a round that fills it partway", stored, ledgerEvents)
	}
	if got := b.outboxLen(t); got != int64(ledgerEvents)-int64(stored) {
		t.Fatalf("the outbox holds %d after %d were stored, want the other %d", got, stored, ledgerEvents-stored)
	}
	b.unblock(t)
	if _, err := r.RelayOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.msgsOn(t, b.stream.Name, b.stream.Name+"."+b.tenant+".>"); got != ledgerEvents {
		t.Fatalf("the stream holds %d of the tenant's events, want each of the %d once", got, ledgerEvents)
	}
}
