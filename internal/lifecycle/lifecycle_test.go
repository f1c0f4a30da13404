package lifecycle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/lifecycle"
)

func TestRunner(t *testing.T) {
	var r lifecycle.Runner
	r.Stop() // safe before Start
	var r2 lifecycle.Runner
	parent, cancelParent := context.WithCancel(context.Background())
	ctx := r2.Start(parent)
	cancelParent() // the workers outlive their starter's context
	var finished atomic.Int32
	for range 3 {
		r2.Go(func() {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // the work in hand
			finished.Add(1)
		})
	}
	if ctx.Err() != nil {
		t.Fatal("the parent's cancellation reached the workers")
	}
	r2.Stop()
	if n := finished.Load(); n != 3 {
		t.Fatalf("Stop returned with %d of 3 goroutines finished", n)
	}
	r2.Stop() // idempotent
	if lifecycle.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context slept")
	}
}

func TestHeartbeat(t *testing.T) {
	var beats atomic.Int32
	stop := lifecycle.Heartbeat(time.Millisecond, func() { beats.Add(1) })
	for beats.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	stop()
	n := beats.Load()
	time.Sleep(10 * time.Millisecond)
	if beats.Load() != n {
		t.Fatal("beats after stop")
	}
}
