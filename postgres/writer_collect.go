package postgres

import (
	"context"
	"time"
)

// take waits until a batch may start (no other is committing, or
// OverlapDepth requests wait), then for requests that no committing batch
// conflicts with (or only one that is ready), and
// returns up to MaxBatch of them (set-aside ones first, then the queue's,
// in arrival order), with the batch's flight, whose accounts are now held.
// It returns nil once ctx ends.
func (w *writer) take(ctx context.Context) ([]*transferRequest, *flight) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		w.bmu.Lock()
		var batch []*transferRequest
		var f *flight
		// While a young batch commits and few wait, let them wait for it.
		var young time.Duration
		if len(w.busy) > 0 && w.waiting.Load() < int64(w.cfg.OverlapDepth) { // a batch is committing (every batch holds accounts)
			young = w.cfg.OverlapAfter - time.Since(w.lastStart)
		}
		if young <= 0 {
			batch, f = w.collect()
		}
		if len(batch) > 0 {
			w.lastStart = time.Now()
			for id := range f.accounts {
				w.busy[id] = f
			}
			for _, id := range f.holds {
				w.resolving[id] = f
			}
			w.waiting.Add(-int64(len(batch)))
			w.bmu.Unlock()
			return batch, f
		}
		freed := w.freed
		queue := w.queue
		if len(w.deferred) >= w.cfg.MaxBatch {
			queue = nil // enough set aside: wait for accounts, leave the rest queued (and the queue's bound felt)
		}
		w.bmu.Unlock()
		var aged <-chan time.Time
		if young > 0 {
			if timer == nil {
				timer = time.NewTimer(young)
			} else {
				timer.Reset(young)
			}
			aged = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-freed:
		case <-aged:
		case r := <-queue:
			w.bmu.Lock()
			w.deferred = append(w.deferred, r) // collect takes it in its turn
			w.bmu.Unlock()
		}
	}
}

// collect forms a batch from the set-aside requests and the queue, leaving
// aside those that touch an account a committing batch holds and is not
// ready with; w.bmu is held.
func (w *writer) collect() ([]*transferRequest, *flight) {
	var batch []*transferRequest
	f := newFlight(w.signal)
	add := func(r *transferRequest) bool {
		if len(batch) >= w.cfg.MaxBatch || w.conflicts(r) {
			return false
		}
		batch = append(batch, r)
		for _, t := range r.in {
			if t.PendingID != "" {
				f.holds = append(f.holds, t.PendingID)
			}
			for _, id := range []string{t.DebitAccountID, t.CreditAccountID} {
				f.accounts[id] = struct{}{}
				if before := w.busy[id]; before != nil {
					f.after[id] = before
				}
			}
		}
		return true
	}
	kept := w.deferred[:0]
	for _, r := range w.deferred {
		if !add(r) {
			kept = append(kept, r)
		}
	}
	clear(w.deferred[len(kept):])
	w.deferred = kept
	for len(batch) < w.cfg.MaxBatch && len(w.deferred) < w.cfg.MaxBatch {
		select {
		case r := <-w.queue:
			if !add(r) {
				w.deferred = append(w.deferred, r)
			}
		default:
			return batch, f
		}
	}
	return batch, f
}

// conflicts reports whether a committing batch that is not ready holds one
// of r's accounts, or, for a request that resolves a hold, whether a
// committing batch resolves the same hold: a pipelined batch reads a
// hold's status before the batch ahead commits, so a second resolution
// waits for that commit instead (and then finds the hold resolved); w.bmu
// is held.
func (w *writer) conflicts(r *transferRequest) bool {
	for _, t := range r.in {
		if f := w.busy[t.DebitAccountID]; f != nil && !f.isReady() {
			return true
		}
		if f := w.busy[t.CreditAccountID]; f != nil && !f.isReady() {
			return true
		}
		if t.PendingID != "" && w.resolving[t.PendingID] != nil {
			return true
		}
	}
	return false
}

// release gives a committed batch's accounts back (those a later batch has
// not taken since) and wakes the committers waiting for them.
func (w *writer) release(f *flight) {
	w.bmu.Lock()
	for id := range f.accounts {
		if w.busy[id] == f {
			delete(w.busy, id)
		}
	}
	for _, id := range f.holds {
		if w.resolving[id] == f {
			delete(w.resolving, id)
		}
	}
	w.wakeLocked()
	w.bmu.Unlock()
}

// signal wakes the committers waiting for accounts.
func (w *writer) signal() {
	w.bmu.Lock()
	w.wakeLocked()
	w.bmu.Unlock()
}

// wakeLocked wakes the committers waiting for accounts; w.bmu is held.
func (w *writer) wakeLocked() {
	close(w.freed)
	w.freed = make(chan struct{})
}
