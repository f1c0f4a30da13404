package load_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// checkResult fails tb unless r is consistent with itself (see Result.Check).
func checkResult(tb testing.TB, r load.Result) {
	tb.Helper()
	if err := r.Check(); err != nil {
		tb.Error(err)
	}
}

// seqSet records the seq of every call, from any goroutine.
type seqSet struct {
	mu   sync.Mutex
	seen map[int64]int
}

func (s *seqSet) add(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[int64]int{}
	}
	s.seen[seq]++
}

// mustBeRange fails tb unless the seqs seen are exactly first, …, first+n-1,
// each once.
func (s *seqSet) mustBeRange(tb testing.TB, first, n int64) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if int64(len(s.seen)) != n {
		tb.Errorf("%d distinct seqs, want %d", len(s.seen), n)
	}
	for seq, k := range s.seen {
		if seq < first || seq >= first+n || k != 1 {
			tb.Errorf("seq %d called %d times; want each of [%d, %d) once", seq, k, first, first+n)
		}
	}
}

var errEveryTenth = errors.New("every tenth call fails")

// TestClosedLoop: every call is counted once and in the right column, with
// a unique seq and a worker index in range.
func TestClosedLoop(t *testing.T) {
	t.Parallel()
	const workers = 4
	var calls atomic.Int64
	var seqs seqSet
	var badWorker atomic.Int64
	r := load.ClosedLoop(t.Context(), "closed", workers, 50*time.Millisecond, func(_ context.Context, worker int, seq int64) (bool, error) {
		calls.Add(1)
		seqs.add(seq)
		if worker < 0 || worker >= workers {
			badWorker.Add(1)
		}
		if seq%10 == 0 {
			return false, errEveryTenth
		}
		return seq%2 == 0, nil
	})
	checkResult(t, r)
	if r.Name != "closed" || r.Offered != 0 {
		t.Errorf("Name %q, Offered %v; want \"closed\", 0 (a closed loop offers no rate)", r.Name, r.Offered)
	}
	if calls.Load() != r.Sent {
		t.Errorf("%d calls made, Sent %d", calls.Load(), r.Sent)
	}
	if badWorker.Load() != 0 {
		t.Errorf("%d calls with a worker index outside [0, %d)", badWorker.Load(), workers)
	}
	// The seqs are 1…Sent, so each outcome's count follows from Sent.
	seqs.mustBeRange(t, 1, r.Sent)
	n := r.Sent
	if r.OK <= 0 || r.Errors != n/10 || r.Failed != (n+1)/2 || r.OK != n/2-n/10 {
		t.Errorf("OK %d, Failed %d, Errors %d of %d; want %d, %d, %d", r.OK, r.Failed, r.Errors, n, n/2-n/10, (n+1)/2, n/10)
	}
}

// runOpenLoop runs an open loop of 2000/s for 100 ms (200 scheduled calls)
// with at most 4 calls in flight, and reports the most calls ever in flight.
func runOpenLoop(t *testing.T, call load.Call) (load.Result, int64) {
	t.Helper()
	var inFlight, most atomic.Int64
	r := load.OpenLoop(t.Context(), "open", openRate, openDuration, openMaxInFlight, func(ctx context.Context, worker int, seq int64) (bool, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		return call(ctx, worker, seq)
	})
	checkResult(t, r)
	if r.Offered != openRate {
		t.Errorf("Offered %v, want %v", r.Offered, openRate)
	}
	if r.Sent != openScheduled {
		t.Errorf("Sent %d, want the %d scheduled calls (rate × duration)", r.Sent, openScheduled)
	}
	if most.Load() > openMaxInFlight {
		t.Errorf("%d calls in flight at once, want at most %d", most.Load(), openMaxInFlight)
	}
	return r, most.Load()
}

const (
	openRate        = 2000.0
	openDuration    = 100 * time.Millisecond
	openMaxInFlight = 4
	openScheduled   = 200
)

// TestOpenLoop_Saturated: calls that find every slot taken by a stuck call
// are not made but counted as errors; the schedule goes on.
func TestOpenLoop_Saturated(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, openScheduled), make(chan struct{})
	// Unblock the stuck calls once all slots are taken and the schedule is
	// over (or nearly): not a timing assertion, only what keeps the run finite.
	go func() {
		for range openMaxInFlight {
			<-entered
		}
		time.Sleep(openDuration)
		close(release)
	}()
	var calls atomic.Int64
	r, most := runOpenLoop(t, func(context.Context, int, int64) (bool, error) {
		calls.Add(1)
		entered <- struct{}{}
		<-release
		return true, nil
	})
	if r.Errors == 0 || r.OK < openMaxInFlight || r.Failed != 0 {
		t.Errorf("OK %d, Failed %d, Errors %d; want ≥ %d OK (the stuck calls), no failure, errors for the calls that found no slot",
			r.OK, r.Failed, r.Errors, openMaxInFlight)
	}
	if calls.Load() != r.OK {
		t.Errorf("%d calls made, want OK %d: a call without a slot must not be made", calls.Load(), r.OK)
	}
	if most != openMaxInFlight {
		t.Errorf("at most %d calls in flight, want %d (all slots taken by stuck calls)", most, openMaxInFlight)
	}
}

// TestOpenLoop_Fast: with calls that return at once, every scheduled call
// is sent, each seq once.
func TestOpenLoop_Fast(t *testing.T) {
	t.Parallel()
	var seqs seqSet
	var calls atomic.Int64
	r, _ := runOpenLoop(t, func(_ context.Context, _ int, seq int64) (bool, error) {
		calls.Add(1)
		seqs.add(seq)
		return seq%2 == 0, nil
	})
	if r.OK == 0 {
		t.Errorf("OK 0 of %d", r.Sent)
	}
	// A call may still find no slot if the scheduler falls behind (race
	// detector, busy CI): those are errors, and every other call was made.
	if calls.Load() != r.OK+r.Failed {
		t.Errorf("%d calls made, want OK %d + Failed %d", calls.Load(), r.OK, r.Failed)
	}
	if r.Errors == 0 {
		seqs.mustBeRange(t, 0, openScheduled)
	}
}

// TestOpenLoopAfter_CountsTheWarmUpApart: one schedule of warm-up + duration;
// the calls scheduled in the warm-up are counted in warm and only there, the
// rest in the result, each seq once. The warm-up's calls fail here, so a call
// counted on the wrong side shows as a failure where none may be.
func TestOpenLoopAfter_CountsTheWarmUpApart(t *testing.T) {
	t.Parallel()
	const warmup = openDuration / 2 // 100 calls at 2,000/s
	var seqs seqSet
	warm, r := load.OpenLoopAfter(t.Context(), "open", openRate, warmup, openDuration, 1000, func(_ context.Context, _ int, seq int64) (bool, error) {
		seqs.add(seq)
		return seq >= openScheduled/2, nil
	})
	checkResult(t, warm)
	checkResult(t, r)
	if warm.Sent != openScheduled/2 || r.Sent != openScheduled {
		t.Errorf("sent %d in the warm-up and %d after, want %d and %d (rate × each span)", warm.Sent, r.Sent, openScheduled/2, openScheduled)
	}
	if warm.Errors+r.Errors > 0 {
		t.Fatalf("%d and %d calls found no slot of 1,000", warm.Errors, r.Errors)
	}
	if warm.Failed != openScheduled/2 || warm.OK != 0 || r.Failed != 0 || r.OK != openScheduled {
		t.Errorf("warm-up OK %d, Failed %d; after OK %d, Failed %d; want 0, %d; %d, 0", warm.OK, warm.Failed, r.OK, r.Failed, openScheduled/2, openScheduled)
	}
	if warm.Offered != openRate || r.Offered != openRate || r.Name != "open" || warm.Name != "open, warm-up" {
		t.Errorf("offered %v and %v, names %q and %q", warm.Offered, r.Offered, warm.Name, r.Name)
	}
	seqs.mustBeRange(t, 0, openScheduled*3/2)
}

// TestClosedLoop_EveryWorkerCallsOnceAtLeast: a run whose time is over
// before its workers start (a machine too busy to schedule them) still
// makes one call per worker, so it measures something on any machine.
func TestClosedLoop_EveryWorkerCallsOnceAtLeast(t *testing.T) {
	t.Parallel()
	const workers = 3
	r := load.ClosedLoop(t.Context(), "closed", workers, 0, func(context.Context, int, int64) (bool, error) { return true, nil })
	if r.Sent != workers || r.OK != workers {
		t.Fatalf("Sent %d, OK %d with no time at all; want one call per worker, %d", r.Sent, r.OK, workers)
	}
	checkResult(t, r)
}

// TestOpenLoopAfter_EachPhaseCallsOnceAtLeast: at a rate too low for one
// call within the warm-up or the run (a slow machine's peak), each phase
// still makes one call, so each measures something on any machine.
func TestOpenLoopAfter_EachPhaseCallsOnceAtLeast(t *testing.T) {
	t.Parallel()
	const rate = 5.0 // one call per 200 ms
	warm, r := load.OpenLoopAfter(t.Context(), "slow", rate, 100*time.Millisecond, 100*time.Millisecond, 4,
		func(context.Context, int, int64) (bool, error) { return true, nil })
	if warm.Sent != 1 || r.Sent != 1 {
		t.Fatalf("sent %d in the warm-up and %d after, at %v/s over 100 ms each; want 1 and 1", warm.Sent, r.Sent, rate)
	}
	checkResult(t, warm)
	checkResult(t, r)
	// Without a warm-up asked for, none is made.
	warm, _ = load.OpenLoopAfter(t.Context(), "slow", rate, 0, 100*time.Millisecond, 4,
		func(context.Context, int, int64) (bool, error) { return true, nil })
	if warm.Sent != 0 {
		t.Fatalf("sent %d in a warm-up of 0, want none", warm.Sent)
	}
}
