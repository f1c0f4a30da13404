package events_test

import (
	"strings"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/postgres"
)

// setMaxMsgs sets the stream's message limit (-1: none).
func (e *env) setMaxMsgs(t *testing.T, n int64) {
	t.Helper()
	s, err := e.nats.JS.Stream(t.Context(), e.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = n
	if _, err := e.nats.JS.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// msgIDs returns the Nats-Msg-Id of every message in the stream.
func (e *env) msgIDs(t *testing.T) []string {
	t.Helper()
	s, err := e.nats.JS.Stream(t.Context(), e.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get(njs.MsgIDHeader))
	}
	return ids
}

// A keyed batch refused partway (the stream full after 3 of its 5 events),
// retried with its key after the stream's duplicate window: with the store
// of stored events, each event is stored once; without it (the control),
// the window alone cannot tell, and the retry stores the first 3 again.
func TestPublisher_KeyedRetryAfterTheDuplicateWindowStoresNothingTwice(t *testing.T) {
	t.Parallel()
	for _, withStore := range []bool{true, false} {
		e := setup(t)
		e.stream.Name, e.stream.Duplicates = e.stream.Name+"_dup", 200*time.Millisecond
		if _, err := events.EnsureStream(t.Context(), e.nats.JS, e.stream); err != nil {
			t.Fatal(err)
		}
		cfg := events.PublisherConfig{Stream: e.stream, Logger: quiet}
		if withStore {
			cfg.Stored = postgres.NewClientEventStore(e.db)
		}
		p, err := events.NewPublisher(e.nats.NC, cfg)
		if err != nil {
			t.Fatal(err)
		}
		batch := make([]holdfast.EventCreate, 5)
		for i := range batch {
			batch[i] = holdfast.EventCreate{Type: "checkout.started"}
		}
		e.setMaxMsgs(t, 3)
		if _, err := p.PublishEvents(t.Context(), e.tenant, "key-1", batch); !holdfast.IsCode(err, holdfast.EOVERLOADED) {
			t.Fatalf("5 events into a stream with room for 3: %v, want EOVERLOADED", err)
		}
		if got := e.streamMsgs(t); got != 3 {
			t.Fatalf("the stream stored %d of the refused batch, want 3", got)
		}
		time.Sleep(time.Second) // past the 200ms duplicate window
		e.setMaxMsgs(t, -1)
		ids, err := p.PublishEvents(t.Context(), e.tenant, "key-1", batch)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, id := range e.msgIDs(t) {
			seen[id]++
		}
		twice := 0
		for _, id := range ids {
			if seen[e.tenant+"/"+id] == 0 {
				t.Fatalf("with store %v: event %s is not in the stream", withStore, id)
			}
			if seen[e.tenant+"/"+id] > 1 {
				twice++
			}
		}
		switch {
		case withStore && twice > 0:
			t.Fatalf("the retry stored %d events twice: %v", twice, seen)
		case !withStore && twice != 3:
			t.Fatalf("control without the store: %d events stored twice, want 3 (else the window did not pass)", twice)
		}
	}
}

// Client events fill the stream only up to their share: past it they are
// refused with 503, and the ledger's events, relayed from the outbox, still
// fit in the room kept for them.
func TestPublisher_ClientEventsLeaveRoomForTheLedger(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.stream.Name, e.stream.MaxBytes = e.stream.Name+"_small", 1<<20
	if _, err := events.EnsureStream(t.Context(), e.nats.JS, e.stream); err != nil {
		t.Fatal(err)
	}
	p, err := events.NewPublisher(e.nats.NC, events.PublisherConfig{Stream: e.stream, Logger: quiet, RefreshEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	props := []byte(`{"blob":"` + strings.Repeat("x", 3000) + `"}`)
	batch := make([]holdfast.EventCreate, 20)
	for i := range batch {
		batch[i] = holdfast.EventCreate{Type: "page.view", Properties: props}
	}
	var refusal error
	for i := 0; i < 100 && refusal == nil; i++ {
		_, refusal = p.PublishEvents(t.Context(), e.tenant, "", batch)
	}
	if !holdfast.IsCode(refusal, holdfast.EOVERLOADED) || !strings.Contains(holdfast.ErrorMessage(refusal), "near its limit") {
		t.Fatalf("client events past their share: %v, want EOVERLOADED for the headroom", refusal)
	}
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	for i := 0; i < 50; i++ {
		e.mustTransfer(t, a, b, int64(i+1))
	}
	e.start(t, e.relay(t))
	eventually(t, "the ledger's events are relayed into the room kept for them", func() bool { return e.outboxLen(t) == 0 })
}
