package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holdfast/holdfast"
)

// WriterConfig configures group commit.
type WriterConfig struct {
	// MaxBatch is the most requests one transaction applies. Default 1000.
	MaxBatch int
	// QueueSize bounds the requests waiting for a batch; beyond it callers get
	// EOVERLOADED at once. Default 4 × MaxBatch. (At most MaxBatch more wait
	// aside, taken from the queue but set aside because a committing batch
	// holds one of their accounts.)
	QueueSize int
	// Committers is how many batches may be in flight at once, so one fills
	// while another commits. Each has its own database connection, outside
	// the request pool. Default 2.
	Committers int
	// OverlapDepth is how many requests must wait before a batch starts
	// while another, younger than OverlapAfter, is committing. Below it they
	// wait for the committing batch and then go in one batch: a batch's
	// fixed cost (two round trips, planning, the commit) is shared by more
	// requests, which leaves the cores more to spare below the peak
	// (docs/decisions/0006-a-second-batch-waits-for-a-young-one.md). 1 starts a batch whenever a committer
	// is free. Default 64.
	OverlapDepth int
	// OverlapAfter bounds that wait: once the committing batch is this old
	// (a row lock held elsewhere, a slow commit), the next starts whatever
	// waits, so a stuck batch does not hold up transfers between other
	// accounts for longer. Default 20ms.
	OverlapAfter time.Duration
	// BatchTimeout bounds one batch's transaction. Default 10s.
	BatchTimeout time.Duration
	// MaxWait bounds the queueing delay a request is admitted to: submit
	// refuses with EOVERLOADED at once while more requests wait than the
	// writer commits in MaxWait (Little's law: wait = depth ÷ throughput,
	// with the throughput measured on full batches, so it is the writer's
	// capacity, not the demand of a quiet moment; see observe). At least
	// MaxBatch may always wait: up to one batch's worth, the next free
	// committer takes the whole queue, so refusing there would shorten no
	// one's wait, only the batches, and with them the throughput measured
	// on them (an admitted depth below that fed on itself: under 1,024
	// connections at 20 ms it sank to ~190 and halved the goodput). A burst
	// into an idle writer is never refused either. 0: off, only QueueSize
	// bounds the queue.
	//
	// Admission control in front of a batching writer needs this signal:
	// group commit's latency rises with concurrency while its throughput
	// rises too (fuller batches), so a limit that backs off when latency
	// rises holds it below its capacity. The queue's delay rises only when
	// requests arrive faster than batches commit them.
	MaxWait time.Duration
	// FullBatch is the smallest batch that measures the writer's capacity
	// for MaxWait (see observe). Default 64.
	FullBatch int
	// Registerer receives the writer's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c WriterConfig) WithDefaults() WriterConfig {
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.QueueSize == 0 {
		c.QueueSize = 4 * c.MaxBatch
	}
	if c.Committers == 0 {
		c.Committers = 2
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 10 * time.Second
	}
	if c.FullBatch == 0 {
		c.FullBatch = 64
	}
	if c.OverlapDepth == 0 {
		c.OverlapDepth = 64
	}
	if c.OverlapAfter == 0 {
		c.OverlapAfter = 20 * time.Millisecond
	}
	return c
}

func (c WriterConfig) validate() error {
	if c.MaxBatch < 1 || c.QueueSize < 1 || c.Committers < 1 || c.BatchTimeout <= 0 || c.MaxWait < 0 || c.FullBatch < 1 || c.OverlapDepth < 1 || c.OverlapAfter < 0 {
		return errors.New("postgres: WriterConfig values must be positive")
	}
	return nil
}

// writer is group commit for transfers, the way Redis runs one command queue
// and TigerBeetle commits thousands of transfers at once: concurrent
// CreateTransfers calls wait in a bounded queue, and each committer takes
// everything waiting (up to MaxBatch) and applies it in one transaction, so
// a hot account is locked once per batch instead of once per transfer and
// one WAL flush serves the whole batch.
type writer struct {
	svc   *TransferService
	pool  *pgxpool.Pool // the committers' own connections: they never queue behind requests
	cfg   WriterConfig
	queue chan *transferRequest

	batchSize  prometheus.Histogram
	commitTime prometheus.Histogram
	queueWait  prometheus.Histogram
	depthGauge prometheus.GaugeFunc
	shed       prometheus.Counter
	admitGauge prometheus.GaugeFunc
	pipelined  prometheus.Counter // batches whose first attempt was pipelined
	stale      prometheus.Counter // of those, attempts that found other balances and ran again

	// Queue-delay admission (MaxWait): the committers measure their
	// throughput on full batches; submit admits while fewer than admitDepth
	// requests wait.
	rmu        sync.Mutex
	lastFull   time.Time // the last full batch's completion
	fullN      float64   // requests in full batches, decayed
	fullT      float64   // seconds those batches took, decayed
	admitDepth atomic.Int64
	waiting    atomic.Int64 // queued or set aside
	mu         sync.Mutex
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	gate   sync.RWMutex // held shared to enqueue, exclusively to close
	closed bool         // after stop: submit refuses at once

	// Conflict-aware batching: a batch being formed leaves out the requests
	// whose accounts a committing batch holds, until that batch is ready
	// (holds their row locks and knows their final balances); after that they
	// may go into a pipelined batch, which applies them against those
	// balances while the first commits (see flight).
	bmu       sync.Mutex
	busy      map[string]*flight // accounts of the batches being committed: the latest batch to take each
	resolving map[string]*flight // holds the batches being committed resolve: the batch
	deferred  []*transferRequest // taken from the queue, waiting for their accounts; in arrival order
	freed     chan struct{}      // closed (and replaced) whenever a batch gives its accounts back or becomes ready
	lastStart time.Time          // when the latest batch being committed started
}

// newWriter returns a group-commit writer for svc, or an error for an
// invalid configuration or a metric already registered.
func newWriter(svc *TransferService, cfg WriterConfig) (*writer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &writer{svc: svc, cfg: cfg, queue: make(chan *transferRequest, cfg.QueueSize),
		busy: make(map[string]*flight), resolving: make(map[string]*flight), freed: make(chan struct{})}
	w.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_ledger_batch_size", Help: "Transfer requests applied per group-commit transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	w.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_ledger_batch_seconds", Help: "Time to apply and commit one group-commit batch.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	w.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_ledger_queue_wait_seconds", Help: "Time a transfer request waited for its group-commit batch to start.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	w.depthGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_ledger_queue_depth", Help: "Transfer requests waiting for a group-commit batch.",
	}, func() float64 { return float64(w.queueDepth()) })
	w.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_ledger_shed_total", Help: "Transfer requests refused at once because the group-commit queue was full or its delay would exceed the maximum wait.",
	})
	w.admitGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_ledger_admit_depth", Help: "Requests that may wait for group commit before new ones are refused (throughput on full batches × the maximum wait, at least one batch).",
	}, func() float64 { return float64(w.admitted()) })
	w.pipelined = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_ledger_pipelined_batches_total", Help: "Group-commit batches that applied against the balances of a batch still committing (pipelined).",
	})
	w.stale = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holdfast_ledger_pipelined_stale_total", Help: "Pipelined batches that found other balances under the locks than they applied against, and ran again locking first.",
	})
	w.admitDepth.Store(int64(cfg.QueueSize))
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.batchSize, w.commitTime, w.queueWait, w.depthGauge, w.shed, w.admitGauge, w.pipelined, w.stale} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// start runs the committers on a pool of their own. Starting twice is a no-op.
func (w *writer) start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		return nil
	}
	pc := w.svc.db.Pool.Config().Copy()
	pc.MaxConns, pc.MinConns = int32(w.cfg.Committers), 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("group commit: %w", err)
	}
	w.pool = pool
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for range w.cfg.Committers {
		w.wg.Add(1)
		go w.run(ctx)
	}
	return nil
}

// stop stops taking new batches, lets the running ones commit, fails what is
// still queued with EOVERLOADED, and waits. Idempotent; safe before start.
func (w *writer) stop() {
	w.mu.Lock()
	cancel := w.cancel
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	w.gate.Lock()
	w.closed = true // nothing enqueues after this, so the drain below is final
	w.gate.Unlock()
	cancel()
	w.wg.Wait()
	w.pool.Close()
	w.bmu.Lock()
	deferred := w.deferred
	w.deferred = nil
	w.bmu.Unlock()
	for _, r := range deferred {
		w.waiting.Add(-1)
		r.err = holdfast.Errorf(holdfast.EOVERLOADED, "the service is shutting down; retry")
		close(r.done)
	}
	for {
		select {
		case r := <-w.queue:
			w.waiting.Add(-1)
			r.err = holdfast.Errorf(holdfast.EOVERLOADED, "the service is shutting down; retry")
			close(r.done)
		default:
			return
		}
	}
}

// submit queues r and waits for its batch, or for ctx.
func (w *writer) submit(ctx context.Context, r *transferRequest) ([]*holdfast.Transfer, *holdfast.Outcome, error) {
	r.done = make(chan struct{})
	r.queued = time.Now()
	w.gate.RLock()
	if w.closed {
		w.gate.RUnlock()
		return nil, nil, holdfast.Errorf(holdfast.EOVERLOADED, "the service is shutting down; retry")
	}
	if w.waiting.Add(1) > w.admitDepth.Load() {
		w.waiting.Add(-1)
		w.gate.RUnlock()
		w.shed.Inc()
		return nil, nil, holdfast.Errorf(holdfast.EOVERLOADED, "the transfer queue is longer than the ledger commits in its maximum wait; retry shortly")
	}
	select {
	case w.queue <- r:
		w.gate.RUnlock()
	default:
		w.waiting.Add(-1)
		w.gate.RUnlock()
		w.shed.Inc()
		return nil, nil, holdfast.Errorf(holdfast.EOVERLOADED, "the transfer queue is full; retry shortly")
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return nil, nil, ctx.Err() // still queued: no batch will apply it
		}
		// A batch has taken it: its outcome, not the deadline, is the
		// answer, and the batch's own timeout bounds the wait.
		<-r.done
	}
	return r.finish()
}

func (w *writer) run(ctx context.Context) {
	defer w.wg.Done()
	for {
		batch, f := w.take(ctx)
		if batch == nil {
			return
		}
		w.commit(ctx, batch, f)
		w.release(f)
	}
}

// commit applies one batch and wakes its waiters. Requests whose callers
// have gone or whose deadlines have passed are dropped before the
// transaction starts; the others are taken, and from then on their callers
// wait for the batch's outcome.
func (w *writer) commit(ctx context.Context, batch []*transferRequest, f *flight) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil && r.state.CompareAndSwap(queued, abandoned) {
			r.err = err
			close(r.done)
			continue
		}
		if !r.state.CompareAndSwap(queued, taken) {
			continue // abandoned by its caller, who has been answered
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if f.pipelines() {
		w.pipelined.Inc()
	}
	start := time.Now()
	for _, r := range live {
		w.queueWait.Observe(start.Sub(r.queued).Seconds())
	}
	// The committers' pool is theirs alone (a connection each), so an acquire
	// waits only for a connection to be dialled, which on a busy machine can
	// take longer than the request pools' acquire timeout: the batch's own
	// timeout bounds it instead.
	bctx, cancel := context.WithTimeout(Patient(context.WithoutCancel(ctx)), w.cfg.BatchTimeout)
	err := w.svc.applyBatch(bctx, w.pool, live, f)
	cancel()
	took := time.Since(start)
	if f.stale {
		w.stale.Inc()
	}
	w.batchSize.Observe(float64(len(live)))
	w.commitTime.Observe(took.Seconds())
	if err == nil {
		w.observe(len(live), took) // requests dropped before the transaction, or a failed batch, say nothing of capacity
	}
	for _, r := range live {
		if err != nil {
			r.err = err
		}
		close(r.done)
	}
}

// stats reads the writer's own metrics.
func (w *writer) stats() LedgerStats {
	var size, took, wait, shed dto.Metric
	w.batchSize.Write(&size)
	w.commitTime.Write(&took)
	w.queueWait.Write(&wait)
	w.shed.Write(&shed)
	return LedgerStats{
		Batches: int64(size.GetHistogram().GetSampleCount()), Requests: int64(size.GetHistogram().GetSampleSum()),
		BatchSeconds: took.GetHistogram().GetSampleSum(), QueueWaitSeconds: wait.GetHistogram().GetSampleSum(),
		Shed: int64(shed.GetCounter().GetValue()),
	}
}
