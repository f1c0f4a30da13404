package postgres

import (
	"math"
	"time"
)

// queueDepth returns how many transfer requests wait for a batch.
func (w *writer) queueDepth() int { return int(w.waiting.Load()) }

// admitted returns how many requests may wait before submit refuses new
// ones: QueueSize until the writer has measured its throughput on a full
// batch, and always without MaxWait.
func (w *writer) admitted() int { return int(w.admitDepth.Load()) }

// observe records a committed batch of n requests that took d and, with
// MaxWait, moves the admitted depth to what the writer commits in MaxWait.
// Only full batches (FullBatch or more requests) measure capacity:
// their per-request cost is the writer's, while a small batch's is mostly
// the fixed cost of a transaction, which a backlog would share. The
// committers are counted as working side by side (on a hot workload they
// take turns, so the depth admitted is up to twice the delay's worth: the
// error is on the side of refusing less). Samples fade with a one-second
// time constant.
//
// Not measured: the time between completions while a backlog waits. A
// backlog forms when a batch is slow, so those samples were the slow
// moments, and the estimate settled at half the capacity.
func (w *writer) observe(n int, d time.Duration) {
	if w.cfg.MaxWait <= 0 || n < w.cfg.FullBatch || d <= 0 {
		return
	}
	now := time.Now()
	w.rmu.Lock()
	defer w.rmu.Unlock()
	fade := 1.0
	if !w.lastFull.IsZero() {
		fade = math.Exp(-now.Sub(w.lastFull).Seconds())
	}
	w.fullN = w.fullN*fade + float64(n)
	w.fullT = w.fullT*fade + d.Seconds()
	w.lastFull = now
	rate := w.fullN / w.fullT * float64(w.cfg.Committers)
	depth := int64(rate * w.cfg.MaxWait.Seconds())
	w.admitDepth.Store(min(max(depth, int64(w.cfg.MaxBatch)), int64(w.cfg.QueueSize)))
}
