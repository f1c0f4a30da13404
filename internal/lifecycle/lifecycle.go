// Package lifecycle is what Holdfast's background workers (the outbox
// relay, consumer groups, receipt workers) share: Start backgrounds them,
// Stop is idempotent, safe before Start, and waits for the work in hand.
package lifecycle

import (
	"context"
	"sync"
	"time"
)

// Runner runs a worker's goroutines until Stop. The zero value is ready.
type Runner struct {
	cancel context.CancelFunc
	done   sync.WaitGroup
	once   sync.Once
}

// Start returns the context the goroutines run under: it keeps parent's
// values but not its cancellation, and ends at Stop.
func (r *Runner) Start(parent context.Context) context.Context {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	r.cancel = cancel
	return ctx
}

// Go runs fn in a goroutine that Stop waits for.
func (r *Runner) Go(fn func()) {
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		fn()
	}()
}

// Stop cancels the context Start returned and waits for every goroutine.
func (r *Runner) Stop() {
	r.once.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
	})
	r.done.Wait()
}

// Sleep waits for d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Heartbeat calls beat every interval until the returned stop is called
// (stop waits for a beat in progress).
func Heartbeat(every time.Duration, beat func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				beat()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
