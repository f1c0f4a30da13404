package lab_test

import (
	"errors"
	"testing"

	"github.com/holdfast/holdfast/lab"
)

// TestScenarioBurst: the naive queue is killed by the burst and loses what
// it held; the log loses nothing and applies nothing twice, through a pause.
func TestScenarioBurst(t *testing.T) {
	t.Parallel()
	res := mustRun(t, "burst").Data.(*lab.BurstScenario)
	if n := res.Naive; !n.Killed || n.Lost == 0 {
		t.Errorf("naive: killed %v, %d lost (%d produced, %d consumed); want the burst to kill it with events in the queue", n.Killed, n.Lost, n.Produced, n.Consumed)
	}
	h := res.Holdfast
	if h.Produced == 0 || h.Audited != h.Produced || h.Analyzed != h.Produced || h.Lost != 0 || h.Duplicated != 0 {
		t.Errorf("Holdfast: produced %d, audited %d, analytics %d, lost %d, duplicated %d; want all equal, none lost or twice",
			h.Produced, h.Audited, h.Analyzed, h.Lost, h.Duplicated)
	}
	if !h.Drained || h.PeakLag == 0 {
		t.Errorf("Holdfast: peak lag %d, drained %v; want the lag to rise and drain", h.PeakLag, h.Drained)
	}
	if len(res.PauseErrors) > 0 || res.ResumedAt <= res.PausedAt {
		t.Errorf("pause %.1f s, resume %.1f s, errors %v", res.PausedAt, res.ResumedAt, res.PauseErrors)
	}
}

func TestMemoryQueue(t *testing.T) {
	q := &lab.MemoryQueue{Limit: 10}
	for _, e := range []string{"abcd", "efgh"} {
		if err := q.Push([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	if got := q.Pop(1); len(got) != 1 || string(got[0]) != "abcd" {
		t.Fatalf("Pop(1) = %q", got)
	}
	if n, b := q.Len(); n != 1 || b != 4 {
		t.Fatalf("Len() = %d, %d; want 1, 4", n, b)
	}
	if err := q.Push([]byte("ijkl")); err != nil {
		t.Fatal(err)
	}
	if err := q.Push([]byte("mnop")); !errors.Is(err, lab.ErrKilled) {
		t.Fatalf("past the limit: %v, want ErrKilled", err)
	}
	if killed, lost := q.Killed(); !killed || lost != 3 {
		t.Fatalf("Killed() = %v, %d; want true, 3", killed, lost)
	}
	if err := q.Push([]byte("q")); !errors.Is(err, lab.ErrKilled) || len(q.Pop(10)) != 0 {
		t.Fatalf("a killed queue took an event or gave one")
	}
}
