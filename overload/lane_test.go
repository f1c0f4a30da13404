package overload_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/overload"
)

func MustLane(tb testing.TB, cfg overload.LaneConfig) *overload.Lane {
	tb.Helper()
	l, err := overload.NewLane(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// waitFor yields until cond holds; the test's own timeout bounds it.
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// TestLane_NeverRunsMoreThanItsSize runs many jobs at once through a lane
// of 3 whose queue has room for all of them: every job runs, never more
// than 3 at a time.
func TestLane_NeverRunsMoreThanItsSize(t *testing.T) {
	t.Parallel()
	const size, jobs = 3, 300
	lane := MustLane(t, overload.LaneConfig{Size: size, Queue: jobs})
	var running, peak, done atomic.Int64
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			err := lane.Do(context.Background(), func() error {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				runtime.Gosched() // give the others a chance to overlap
				running.Add(-1)
				done.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if done.Load() != jobs {
		t.Fatalf("%d jobs ran, want %d", done.Load(), jobs)
	}
	if peak.Load() > size {
		t.Fatalf("%d jobs ran at once in a lane of %d", peak.Load(), size)
	}
	if lane.Running() != 0 || lane.Waiting() != 0 {
		t.Fatalf("after the jobs: %d running, %d waiting", lane.Running(), lane.Waiting())
	}
}

// TestLane_FullQueueRefusesAtOnce fills the lane's slot and its queue; the
// next job is refused with EOVERLOADED without running or waiting.
func TestLane_FullQueueRefusesAtOnce(t *testing.T) {
	t.Parallel()
	lane := MustLane(t, overload.LaneConfig{Size: 1, Queue: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		lane.Do(context.Background(), func() error { close(started); <-release; return nil })
	})
	<-started
	var queuedRan atomic.Bool
	wg.Go(func() {
		if err := lane.Do(context.Background(), func() error { queuedRan.Store(true); return nil }); err != nil {
			t.Errorf("queued job: %v", err)
		}
	})
	waitFor(func() bool { return lane.Waiting() == 1 })

	ran := false
	err := lane.Do(context.Background(), func() error { ran = true; return nil })
	if !errors.Is(err, overload.ErrLaneFull) || !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("third job: %v, want ErrLaneFull (EOVERLOADED)", err)
	}
	if ran {
		t.Fatal("a refused job ran")
	}
	close(release)
	wg.Wait()
	if !queuedRan.Load() {
		t.Fatal("the queued job did not run once the slot was free")
	}
}

// TestLane_EndedContext: a job whose context has ended never starts, and a
// waiting job whose context ends leaves the queue.
func TestLane_EndedContext(t *testing.T) {
	t.Parallel()
	lane := MustLane(t, overload.LaneConfig{Size: 1, Queue: 4})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := lane.Do(ctx, func() error { t.Error("ran after its context ended"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want context.Canceled", err)
	}

	release, started := make(chan struct{}), make(chan struct{})
	go lane.Do(context.Background(), func() error { close(started); <-release; return nil })
	<-started
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- lane.Do(ctx, func() error { t.Error("ran after its context ended"); return nil }) }()
	waitFor(func() bool { return lane.Waiting() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Do = %v, want context.Canceled", err)
	}
	if lane.Waiting() != 0 {
		t.Fatalf("%d still waiting", lane.Waiting())
	}
	close(release)
}

// TestLane_Unbounded: a negative size runs every job at once (the
// benchmarks' "off").
func TestLane_Unbounded(t *testing.T) {
	t.Parallel()
	lane := MustLane(t, overload.LaneConfig{Size: -1})
	if lane.Size() != 0 {
		t.Fatalf("Size = %d, want 0 (unbounded)", lane.Size())
	}
	const jobs = 50
	var wg sync.WaitGroup
	var all sync.WaitGroup
	all.Add(jobs)
	for range jobs {
		wg.Go(func() {
			lane.Do(context.Background(), func() error { all.Done(); all.Wait(); return nil }) // every job waits for all to start
		})
	}
	wg.Wait()
}

func TestLane_DefaultSize(t *testing.T) {
	t.Parallel()
	lane := MustLane(t, overload.LaneConfig{})
	if want := max(1, runtime.GOMAXPROCS(0)-1); lane.Size() != want {
		t.Fatalf("default size %d, want %d", lane.Size(), want)
	}
}
