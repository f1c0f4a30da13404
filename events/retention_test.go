package events_test

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/postgres"
)

func (e *env) retention(t *testing.T, window time.Duration, required ...string) *events.Retention {
	t.Helper()
	r, err := events.NewRetention(e.nats.JS, e.states, events.RetentionConfig{Stream: e.stream, Groups: required,
		ReplayWindow: window, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) streamSeqs(t *testing.T) (first, last uint64) {
	t.Helper()
	s, err := e.nats.JS.Stream(t.Context(), e.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	return info.State.FirstSeq, info.State.LastSeq
}

// Retention never deletes what a group has not applied, nor what is
// younger than the replay window: it purges below the lowest applied floor
// of the groups on the stream, and nothing while a required group has no
// position yet.
func TestRetention_NeverDeletesWhatAGroupHasNotApplied(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	for i := 0; i < 10; i++ {
		e.mustTransfer(t, a, b, int64(i+1))
	}
	const want = 12
	e.start(t, e.relay(t))
	eventually(t, "the stream holds the events", func() bool { return e.streamMsgs(t) == want })

	// The audit group applies everything; "lagging" has applied up to 5.
	audit := e.group(t, postgres.AuditGroup, e.audit)
	e.start(t, audit)
	eventually(t, "audit applies every event and records its floor", func() bool {
		st, err := e.states.State(t.Context(), postgres.AuditGroup)
		return err == nil && st.AppliedFloor == want
	})
	if _, err := e.states.EnsureGroup(t.Context(), "lagging", e.stream.Name, ""); err != nil {
		t.Fatal(err)
	}

	// A required group without a position holds the stream whole.
	if n, err := e.retention(t, time.Millisecond, "analytics").PurgeOnce(t.Context()); err == nil || n != 0 {
		t.Fatalf("with a required group unstarted: purged %d, %v; want nothing and an error", n, err)
	}
	// A group at floor 0 holds it whole too.
	if n, err := e.retention(t, time.Millisecond).PurgeOnce(t.Context()); err != nil || n != 0 {
		t.Fatalf("with a group that applied nothing: purged %d, %v; want 0", n, err)
	}
	if err := e.states.Prune(t.Context(), "lagging", 5); err != nil {
		t.Fatal(err)
	}
	// The replay window keeps what every group applied.
	if n, err := e.retention(t, time.Hour).PurgeOnce(t.Context()); err != nil || n != 0 {
		t.Fatalf("within the replay window: purged %d, %v; want 0", n, err)
	}
	n, err := e.retention(t, time.Millisecond).PurgeOnce(t.Context())
	if err != nil || n != 5 {
		t.Fatalf("purged %d, %v; want the 5 every group applied", n, err)
	}
	if first, last := e.streamSeqs(t); first != 6 || last != want {
		t.Fatalf("the stream keeps %d..%d, want 6..%d", first, last, want)
	}
	// Run again: nothing more goes until the lagging group moves.
	if n, err := e.retention(t, time.Millisecond).PurgeOnce(t.Context()); err != nil || n != 0 {
		t.Fatalf("a second round purged %d, %v; want 0", n, err)
	}
	if err := e.states.Prune(t.Context(), "lagging", want); err != nil {
		t.Fatal(err)
	}
	if n, err := e.retention(t, time.Millisecond).PurgeOnce(t.Context()); err != nil || n != want-5 {
		t.Fatalf("once every group applied everything: purged %d, %v; want %d", n, err, want-5)
	}
}

// The replay window is measured from when each message was stored: an
// older message goes, a younger one stays, though every group applied both.
func TestRetention_KeepsTheReplayWindow(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a := e.mustAccount(t, true)
	e.start(t, e.relay(t))
	eventually(t, "the first event is stored", func() bool { return e.streamMsgs(t) == 1 })
	time.Sleep(1500 * time.Millisecond) // store times one side and the other of the window below
	b := e.mustAccount(t, true)
	e.mustTransfer(t, a, b, 1)
	eventually(t, "the later events are stored", func() bool { return e.streamMsgs(t) == 3 })
	if _, err := e.states.EnsureGroup(t.Context(), "done", e.stream.Name, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.states.Prune(t.Context(), "done", 3); err != nil {
		t.Fatal(err)
	}
	if n, err := e.retention(t, time.Second).PurgeOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want the one message older than the window", n, err)
	}
}
