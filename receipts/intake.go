package receipts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// IntakeConfig configures batched intake.
type IntakeConfig struct {
	// MaxBatch is the most uploads one batch makes durable and records.
	// Default 256.
	MaxBatch int
	// QueueSize bounds the uploads waiting for a batch; beyond it an upload
	// is refused at once with EOVERLOADED. Default 4 × MaxBatch.
	QueueSize int
	// Committers is how many batches may be in flight at once, so that
	// one syncs its blobs while another commits its rows. Each needs a
	// database connection. Default 4.
	Committers int
	// BusyRate is the upload rate, per second over the last second, at and
	// above which Busy reports true and the workers yield. Default 50.
	BusyRate int
	// MaxYield bounds how long the workers yield in one stretch: uploads
	// arriving at BusyRate for longer are not a spike but the load, and
	// the workers must then keep up with it at full speed, or the backlog
	// would grow for as long as it lasts. Default 5m.
	MaxYield time.Duration
	// Registerer receives intake's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c IntakeConfig) WithDefaults() IntakeConfig {
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.QueueSize == 0 {
		c.QueueSize = 4 * c.MaxBatch
	}
	if c.Committers == 0 {
		c.Committers = 4
	}
	if c.BusyRate == 0 {
		c.BusyRate = 50
	}
	if c.MaxYield == 0 {
		c.MaxYield = 5 * time.Minute
	}
	return c
}

// IntakeStore is the batched intake's view of the receipt store
// (postgres.ReceiptStore).
type IntakeStore interface {
	// QueueReceipts records uploads and their jobs in one transaction, as
	// QueueReceipt would one after the other; errs[i] is rs[i]'s own
	// refusal (ENOTFOUND, EQUOTA), err the batch's.
	QueueReceipts(ctx context.Context, rs []*holdfast.Receipt, quota int64) (out []*holdfast.Receipt, errs []error, err error)
}

// Intake is group commit for uploads: uploads wait in a bounded queue,
// and each committer takes everything waiting (up to MaxBatch), makes
// their staged blobs durable with one round of fsyncs
// (BlobStore.CommitBatch) and records their receipts, jobs and events in
// one transaction, then
// answers each upload with its own outcome. An upload is queued, then
// either taken by a batch or abandoned by its caller, whichever comes
// first: an abandoned upload stores nothing, and a taken one's caller
// waits for its batch's outcome (decision 0047).
type Intake struct {
	store IntakeStore
	blobs BlobStore
	quota int64
	cfg   IntakeConfig
	queue chan *upload
	run   lifecycle.Runner

	gate   sync.RWMutex // held shared to enqueue, exclusively to close
	closed bool

	batchSize prometheus.Histogram
	shed      prometheus.Counter

	// Arrivals per quarter second, for Busy: the current quarter's index
	// and count, and the three before it.
	amu      sync.Mutex
	quarter  int64
	arrivals [4]int64
	busy     streak
}

// upload states: queued until a batch takes it or its caller abandons it.
const (
	uploadQueued int32 = iota
	uploadTaken
	uploadAbandoned
)

type upload struct {
	ctx   context.Context
	blob  *blob.Staged
	r     *holdfast.Receipt
	state atomic.Int32
	done  chan struct{}
	out   *holdfast.Receipt
	err   error
}

// NewIntake returns batched intake storing blobs in blobs and receipts in
// store, charging each tenant's stored bytes against quota (negative: none).
func NewIntake(store IntakeStore, blobs BlobStore, quota int64, cfg IntakeConfig) (*Intake, error) {
	cfg = cfg.WithDefaults()
	if cfg.MaxBatch < 1 || cfg.QueueSize < 1 || cfg.Committers < 1 || cfg.BusyRate < 1 {
		return nil, errors.New("receipts: IntakeConfig values must be positive")
	}
	in := &Intake{store: store, blobs: blobs, quota: quota, cfg: cfg, queue: make(chan *upload, cfg.QueueSize)}
	in.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "holdfast_receipt_intake_batch_size",
		Help: "Uploads made durable and recorded per intake batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	in.shed = prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_receipt_intake_shed_total",
		Help: "Uploads refused at once because the intake queue was full."})
	collectors := []prometheus.Collector{in.batchSize, in.shed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_receipt_intake_queue_depth", Help: "Uploads waiting for an intake batch."},
			func() float64 { return float64(len(in.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_receipt_intake_busy", Help: "1 while uploads arrive fast enough that the receipt workers yield to intake."},
			func() float64 {
				if in.Busy() {
					return 1
				}
				return 0
			}),
	}
	if cfg.Registerer != nil {
		for _, c := range collectors {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return in, nil
}

// Start runs the committers until Stop.
func (in *Intake) Start(ctx context.Context) {
	ctx = in.run.Start(context.WithoutCancel(ctx))
	for range in.cfg.Committers {
		in.run.Go(func() { in.commit(ctx) })
	}
}

// Stop refuses new uploads, lets the batches in hand finish, and refuses
// what is still queued with EOVERLOADED. Idempotent; safe before Start.
func (in *Intake) Stop() {
	in.gate.Lock()
	in.closed = true
	in.gate.Unlock()
	in.run.Stop()
	for {
		select {
		case u := <-in.queue:
			if u.state.CompareAndSwap(uploadQueued, uploadTaken) {
				u.blob.Discard()
				u.err = holdfast.Errorf(holdfast.EOVERLOADED, "the service is shutting down; retry")
				close(u.done)
			}
		default:
			return
		}
	}
}

// Put queues an upload whose image is staged in the blob store, described
// by r (its OriginalKey is set here), and waits for its batch: the receipt
// as QueueReceipts returns it, or its refusal. EOVERLOADED at once when the
// queue is full; ctx's error if ctx ends while the upload is still queued.
// A refused upload's staged image is discarded: nothing is stored.
func (in *Intake) Put(ctx context.Context, staged *blob.Staged, r *holdfast.Receipt) (*holdfast.Receipt, error) {
	in.arrived()
	u := &upload{ctx: ctx, blob: staged, r: r, done: make(chan struct{})}
	in.gate.RLock()
	if in.closed {
		in.gate.RUnlock()
		staged.Discard()
		return nil, holdfast.Errorf(holdfast.EOVERLOADED, "the service is shutting down; retry")
	}
	select {
	case in.queue <- u:
		in.gate.RUnlock()
	default:
		in.gate.RUnlock()
		staged.Discard()
		in.shed.Inc()
		return nil, holdfast.Errorf(holdfast.EOVERLOADED, "the upload queue is full; retry shortly")
	}
	select {
	case <-u.done:
	case <-ctx.Done():
		if u.state.CompareAndSwap(uploadQueued, uploadAbandoned) {
			staged.Discard()
			return nil, ctx.Err() // still queued: no batch will store it
		}
		<-u.done // taken: its batch's outcome is the answer
	}
	return u.out, u.err
}

// commit takes batches until Stop.
func (in *Intake) commit(ctx context.Context) {
	for {
		var first *upload
		select {
		case <-ctx.Done():
			return
		case first = <-in.queue:
		}
		batch := []*upload{first}
	fill:
		for len(batch) < in.cfg.MaxBatch {
			select {
			case u := <-in.queue:
				batch = append(batch, u)
			default:
				break fill
			}
		}
		in.apply(ctx, batch)
	}
}

// apply takes the batch's uploads whose callers are still there, stores
// their blobs and records them, and answers each.
func (in *Intake) apply(ctx context.Context, batch []*upload) {
	live := batch[:0]
	for _, u := range batch {
		if err := u.ctx.Err(); err != nil && u.state.CompareAndSwap(uploadQueued, uploadAbandoned) {
			u.blob.Discard()
			u.err = err
			close(u.done)
			continue
		}
		if u.state.CompareAndSwap(uploadQueued, uploadTaken) {
			live = append(live, u)
		}
	}
	if len(live) == 0 {
		return
	}
	in.batchSize.Observe(float64(len(live)))
	staged := make([]*blob.Staged, len(live))
	rs := make([]*holdfast.Receipt, len(live))
	for i, u := range live {
		staged[i], rs[i] = u.blob, u.r
		u.r.OriginalKey = u.blob.Key()
	}
	// The batch runs to its end whatever its callers' deadlines: the
	// store bounds it (postgres.receiptCommitTimeout).
	bctx := context.WithoutCancel(ctx)
	err := in.blobs.CommitBatch(bctx, staged)
	var out []*holdfast.Receipt
	var errs []error
	if err == nil {
		out, errs, err = in.store.QueueReceipts(bctx, rs, in.quota)
	} else {
		err = fmt.Errorf("store receipt images: %w", err)
	}
	for i, u := range live {
		if err != nil {
			u.err = err
		} else {
			u.out, u.err = out[i], errs[i]
		}
		close(u.done)
	}
}

// arrived counts an upload for Busy.
func (in *Intake) arrived() {
	q := time.Now().UnixMilli() / 250
	in.amu.Lock()
	in.advance(q)
	in.arrivals[q%4]++
	in.amu.Unlock()
}

// advance clears the quarters between the last counted and q.
func (in *Intake) advance(q int64) {
	for in.quarter < q {
		in.quarter++
		in.arrivals[in.quarter%4] = 0
		if q-in.quarter > 4 {
			in.quarter = q - 4
		}
	}
}

// Busy reports whether uploads arrived at BusyRate or faster over the
// last second, for no longer than MaxYield in a row: the workers then
// yield the CPU to intake.
func (in *Intake) Busy() bool {
	now := time.Now()
	q := now.UnixMilli() / 250
	in.amu.Lock()
	defer in.amu.Unlock()
	in.advance(q)
	var n int64
	for _, a := range in.arrivals {
		n += a
	}
	return in.busy.yield(n >= int64(in.cfg.BusyRate), now, in.cfg.MaxYield)
}

// streak bounds a stretch of yielding: it starts when intake becomes busy
// and ends when it is not.
type streak struct{ since time.Time }

// yield reports whether to yield at now, intake being busy or not: only
// while the busy stretch is shorter than max.
func (s *streak) yield(busy bool, now time.Time, max time.Duration) bool {
	if !busy {
		s.since = time.Time{}
		return false
	}
	if s.since.IsZero() {
		s.since = now
	}
	return now.Sub(s.since) < max
}
