package naive

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/lifecycle"
)

// QueueSample is the naive queue at a moment of its run.
type QueueSample struct {
	AtMS    int64   `json:"at_ms"` // since the run began
	Queued  int     `json:"queued"`
	MiB     float64 `json:"queued_mib"` // the queued events' bytes
	HeapMiB float64 `json:"heap_mib"`   // this process's live heap objects
	Phase   string  `json:"phase"`
}

// BurstConfig shapes a naive burst run; the rates are events per second.
type BurstConfig struct {
	ConsumerRate          float64       // what the consumer sustains
	NormalRate, BurstRate float64       // offered before/after and during the burst
	Warmup, Burst         time.Duration // the normal rate's, then the burst's
	MaxDrain              time.Duration // after the burst, at the normal rate, until the queue is empty
	Limit                 int64         // MemoryQueue.Limit
}

// BurstResult is what a naive burst run measured.
type BurstResult struct {
	Produced, Consumed  int64
	Killed              bool
	KilledAt            time.Duration // since the run began
	Lost                int           // events in the queue when it was killed
	PeakQueued          int
	PeakMiB             float64
	StartHeap, PeakHeap float64       // MiB of live heap objects at the start and at most
	Drain               time.Duration // when not killed: from the burst's end until the queue was empty
	Samples             []QueueSample
}

// RunBurst produces Event-sized events into a MemoryQueue at the
// normal rate for cfg.Warmup, at the burst rate for cfg.Burst, then at the
// normal rate until the queue is empty, while one consumer drains it at
// cfg.ConsumerRate (a delay per event, like the consumer groups' Delay). It
// samples the queue and the heap every 100 ms, and stops when the queue's
// process is killed.
func RunBurst(ctx context.Context, cfg BurstConfig) *BurstResult {
	runtime.GC() // the heap samples start from what is live
	r := &burstRun{cfg: cfg, q: &MemoryQueue{Limit: cfg.Limit}, res: &BurstResult{}, start: time.Now(), phase: "before"}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var consumed int64
	wg.Go(func() { consumed = r.consume(ctx) })
	wg.Go(func() { r.sample(ctx) })
	r.producePhases(ctx)
	cancel()
	wg.Wait()
	r.res.Consumed = consumed
	_, r.res.Lost = r.q.Killed()
	return r.res
}

// burstRun is one RunBurst: its queue, its phase and what it measured.
type burstRun struct {
	cfg   BurstConfig
	q     *MemoryQueue
	res   *BurstResult
	start time.Time
	seq   int64 // events produced so far, the producer's own

	mu    sync.Mutex // guards phase and res's samples and peaks
	phase string
}

func (r *burstRun) setPhase(p string) { r.mu.Lock(); r.phase = p; r.mu.Unlock() }

// consume pops up to 100 events at a time, then waits their delay, until
// ctx ends; it returns how many it consumed.
func (r *burstRun) consume(ctx context.Context) int64 {
	delay := time.Duration(float64(time.Second) / r.cfg.ConsumerRate)
	var consumed int64
	for ctx.Err() == nil {
		batch := r.q.Pop(100)
		n := len(batch)
		if n == 0 {
			n = 1 // an empty poll: wait as for one event
		} else {
			consumed += int64(n)
		}
		lifecycle.Sleep(ctx, time.Duration(n)*delay)
	}
	return consumed
}

// sample records the queue and the heap every 100 ms until ctx ends.
func (r *burstRun) sample(ctx context.Context) {
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n, b := r.q.Len()
		metrics.Read(heap)
		r.mu.Lock()
		res := r.res
		s := QueueSample{AtMS: time.Since(r.start).Milliseconds(), Queued: n, MiB: float64(b) / (1 << 20),
			HeapMiB: float64(heap[0].Value.Uint64()) / (1 << 20), Phase: r.phase}
		if len(res.Samples) == 0 {
			res.StartHeap = s.HeapMiB
		}
		res.Samples = append(res.Samples, s)
		res.PeakQueued, res.PeakMiB, res.PeakHeap = max(res.PeakQueued, n), max(res.PeakMiB, s.MiB), max(res.PeakHeap, s.HeapMiB)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// producePhases produces at the normal rate, then the burst's, then the
// normal rate again until the queue is empty, unless the queue's process
// is killed first.
func (r *burstRun) producePhases(ctx context.Context) {
	cfg := r.cfg
	alive := r.produce(ctx, cfg.NormalRate, cfg.Warmup, nil)
	if alive {
		r.setPhase("burst")
		alive = r.produce(ctx, cfg.BurstRate, cfg.Burst, nil)
	}
	if alive {
		r.setPhase("after")
		burstEnd := time.Now()
		empty := func() bool { n, _ := r.q.Len(); return n == 0 }
		if r.produce(ctx, cfg.NormalRate, cfg.MaxDrain, empty) && empty() {
			r.res.Drain = time.Since(burstEnd)
		}
	}
}

// produce pushes, every 10 ms, what rate owes since the phase began, for d
// or until until says so; it returns false once the queue's process is
// killed (or ctx ends).
func (r *burstRun) produce(ctx context.Context, rate float64, d time.Duration, until func() bool) bool {
	phaseStart, sent := time.Now(), int64(0)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		elapsed := time.Since(phaseStart)
		if d > 0 && elapsed >= d || until != nil && until() {
			return true
		}
		for owed := int64(rate * elapsed.Seconds()); sent < owed; sent++ {
			r.seq++
			if err := r.q.Push(Event(r.seq)); err != nil {
				r.res.Killed, r.res.KilledAt = true, time.Since(r.start)
				r.res.Produced = r.seq - 1
				return false
			}
		}
		r.res.Produced = r.seq
		<-tick.C
	}
	return false
}

// Event returns event number seq, like those the events benchmark posts
// (about 150 bytes), in an allocation of its own.
func Event(seq int64) []byte {
	return fmt.Appendf(nil, `{"type":"payment.attempted","properties":{"amount":%d,"currency":"EUR","method":"card","card_brand":"visa","session":"s-%06d"}}`, 100+seq%1000, seq)
}
