package receipts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/overload"
)

// WorkerConfig configures the workers of one replica.
type WorkerConfig struct {
	Config
	// Lane runs the CPU-bound part of each job. Required.
	Lane *overload.Lane
	// Tenants names a tenant for the watermark; nil writes its id.
	Tenants func(ctx context.Context, tenantID string) (string, error)
	// Logger receives job failures. Default slog.Default().
	Logger *slog.Logger
	// Metrics may be shared by the replicas of one process; nil records none.
	Metrics *Metrics
	// Process turns an original into variants. Default media.ProcessContext.
	Process func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error)
	// OnStart and OnDone, when set, are called as a job starts and ends
	// (tests count jobs in flight with them).
	OnStart, OnDone func()
	// Yield, when set and reporting true (uploads are arriving: see
	// Service.Busy), holds the replica to one job at a time, each after
	// YieldPause, so that intake has the CPU; the workers go back to full
	// speed once it reports false.
	Yield func() bool
	// YieldPause is the wait before each job while yielding. Default 100ms.
	YieldPause time.Duration
}

// Worker processes receipt jobs in one replica.
type Worker struct {
	cfg   WorkerConfig
	turn  chan struct{} // held by the one job that runs while yielding
	js    njs.JetStream
	store WorkerStore
	blobs BlobStore
	cons  njs.Consumer
	run   lifecycle.Runner
}

// NewWorker returns a replica's workers; store should have a pool of its own
// (its size is the replica's share of the database budget for workers).
func NewWorker(js njs.JetStream, store WorkerStore, blobs BlobStore, cfg WorkerConfig) (*Worker, error) {
	cfg.Config = cfg.Config.WithDefaults()
	if err := cfg.Config.validate(); err != nil {
		return nil, err
	}
	if cfg.Lane == nil {
		return nil, errors.New("receipts: WorkerConfig.Lane is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Process == nil {
		cfg.Process = media.ProcessContext
	}
	if cfg.YieldPause == 0 {
		cfg.YieldPause = 100 * time.Millisecond
	}
	return &Worker{cfg: cfg, js: js, store: store, blobs: blobs, turn: make(chan struct{}, 1)}, nil
}

// Ensure creates or updates the streams and the workers' consumer.
func (w *Worker) Ensure(ctx context.Context) error {
	cons, err := EnsureStreams(ctx, w.js, w.cfg.Config)
	if err != nil {
		return err
	}
	w.cons = cons
	return nil
}

// Start ensures the streams, unless Ensure did, and runs the workers until Stop.
func (w *Worker) Start(ctx context.Context) error {
	if w.cons == nil {
		if err := w.Ensure(ctx); err != nil {
			return err
		}
	}
	ctx = w.run.Start(ctx)
	for range w.cfg.Workers {
		w.run.Go(func() { w.work(ctx) })
	}
	return nil
}

// Stop stops fetching and waits for the jobs in hand. Idempotent; safe before Start.
func (w *Worker) Stop() { w.run.Stop() }

func (w *Worker) work(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		release, ok := w.pace(ctx)
		if !ok {
			return
		}
		// One job per fetch: a job waiting in a client-side buffer would use
		// up its visibility timeout and a slot of the cap doing nothing.
		batch, err := w.cons.Fetch(1, njs.FetchMaxWait(time.Second))
		if err != nil {
			release()
			if ctx.Err() == nil {
				backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
				w.cfg.Logger.Warn("receipt worker fetch", "err", err, "retry_in", backoff)
				lifecycle.Sleep(ctx, backoff)
			}
			continue
		}
		backoff = 0
		for m := range batch.Messages() {
			w.handle(ctx, m)
		}
		release()
	}
}

// pace returns at once while the workers need not yield. While they do,
// it waits for the replica's one turn and then YieldPause, and returns the
// function that gives the turn back; false if ctx ended meanwhile.
func (w *Worker) pace(ctx context.Context) (release func(), ok bool) {
	noop := func() {}
	if w.cfg.Yield == nil || !w.cfg.Yield() {
		return noop, true
	}
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return noop, false
	}
	release = func() { <-w.turn }
	if !w.cfg.Yield() {
		release() // the spike ended while this worker waited
		return noop, true
	}
	if !lifecycle.Sleep(ctx, w.cfg.YieldPause) {
		release()
		return noop, false
	}
	return release, true
}

// handle works one job to its end: processed and acknowledged, given back
// for a retry after a backoff, or dead-lettered: after MaxDeliveries, or at
// once when its image cannot be decoded (a retry would fail the same way).
// A stop does not cut a job short; a kill does, and the job comes back
// after the visibility timeout.
func (w *Worker) handle(stopping context.Context, m njs.Msg) {
	if w.cfg.OnStart != nil {
		w.cfg.OnStart()
	}
	// The job ends, for this replica's counts, just before it is settled:
	// once the server has the ack it may deliver the next job at once.
	s := &settling{Msg: m}
	s.done = func() {
		if w.cfg.OnDone != nil {
			w.cfg.OnDone()
		}
	}
	defer s.end()
	m = s
	start := time.Now()
	meta, err := m.Metadata()
	if err != nil {
		w.cfg.Logger.Error("receipt job without metadata", "err", err)
		m.Term()
		return
	}
	var job holdfast.ReceiptJob
	if err := json.Unmarshal(m.Data(), &job); err != nil || job.ReceiptID == "" {
		w.cfg.Logger.Error("unreadable receipt job terminated", "data", string(m.Data()), "err", err)
		m.TermWithReason("unreadable job")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(stopping), 10*w.cfg.AckWait)
	defer cancel()
	stopBeat := lifecycle.Heartbeat(w.cfg.AckWait/3, func() { m.InProgress() })
	err = w.process(ctx, job)
	stopBeat()
	if err == nil {
		m.Ack()
		w.cfg.Metrics.processed(time.Since(start))
		return
	}
	deliveries := int(meta.NumDelivered)
	w.cfg.Metrics.failed()
	if permanent(err) {
		w.cfg.Metrics.permanentFailure()
		w.deadLetter(ctx, m, job, err, deliveries, true)
		return
	}
	if deliveries >= w.cfg.MaxDeliveries {
		w.deadLetter(ctx, m, job, err, deliveries, false)
		return
	}
	delay := Backoff(w.cfg.Config, deliveries, nil)
	w.cfg.Logger.Warn("receipt job failed; retrying", "receipt", job.ReceiptID, "delivery", deliveries, "retry_in", delay, "err", err)
	if rerr := w.store.RecordFailure(ctx, job, err.Error()); rerr != nil {
		w.cfg.Logger.Warn("receipt job: record failure", "err", rerr)
	}
	m.NakWithDelay(delay)
}

// process does the job; it is idempotent: the same original gives the same
// variants and blob keys, and a receipt already ready is left alone.
func (w *Worker) process(ctx context.Context, job holdfast.ReceiptJob) error {
	r, err := w.store.StartJob(ctx, job)
	if err != nil || r == nil {
		return err // nil, nil: done already, or replaced by a newer upload
	}
	f, _, err := w.blobs.Open(ctx, job.OriginalKey)
	if err != nil {
		return err
	}
	src, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	name := job.TenantID
	if w.cfg.Tenants != nil {
		if n, err := w.cfg.Tenants(ctx, job.TenantID); err == nil {
			name = n
		}
	}
	opts := media.Options{Tenant: name, Date: r.CreatedAt}
	var variants media.Variants
	for {
		err = w.cfg.Lane.Do(ctx, func() error {
			var err error
			variants, err = w.cfg.Process(ctx, src, opts)
			return err
		})
		if !errors.Is(err, overload.ErrLaneFull) {
			break
		}
		// The lane is busy with other CPU work: wait for it, keeping the job.
		if !lifecycle.Sleep(ctx, 20*time.Millisecond+rand.N(30*time.Millisecond)) {
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	out := make(map[string]holdfast.ReceiptVariant, 2)
	for _, v := range variants.All() {
		key, err := w.blobs.PutBytes(ctx, v.Data)
		if err != nil {
			return fmt.Errorf("store %s: %w", v.Name, err)
		}
		out[v.Name] = holdfast.ReceiptVariant{Key: key, ContentType: v.ContentType(), Width: v.Width, Height: v.Height, Size: int64(len(v.Data))}
	}
	return w.store.FinishJob(ctx, job, out)
}

// permanent reports whether a job's error would recur on every delivery:
// the original's pixels cannot be decoded, or it breaks a limit. Anything
// else (the blob store, the database, a deadline, a busy lane) may succeed
// later and is retried.
func permanent(err error) bool {
	return errors.Is(err, media.ErrCorrupt) || errors.Is(err, media.ErrFormat) ||
		errors.Is(err, media.ErrTooManyPixels) || errors.Is(err, media.ErrTooLarge)
}

// deadLetter moves a job that failed its last delivery, or failed for good
// (permanent), to the dead-letter stream, marks its receipt failed, and
// acknowledges it, or terminates it if it failed for good; either removes
// it from the work queue. If any step fails, the job is given back and
// tried again later: it is never lost between the two streams.
func (w *Worker) deadLetter(ctx context.Context, m njs.Msg, job holdfast.ReceiptJob, cause error, deliveries int, permanent bool) {
	msg := &nats.Msg{Subject: w.cfg.DeadStream + ".receipts", Data: m.Data(), Header: nats.Header{}}
	msg.Header.Set("Holdfast-Error", truncate(cause.Error(), 1000))
	msg.Header.Set("Holdfast-Deliveries", strconv.Itoa(deliveries))
	if permanent {
		msg.Header.Set("Holdfast-Permanent", "true")
	}
	// The same job dead-lettered twice (a crash after publishing) is stored once.
	ack, err := w.js.PublishMsg(ctx, msg, njs.WithMsgID("dead-"+job.ID+"-"+strconv.Itoa(deliveries)))
	if err == nil {
		_, err = w.store.DeadLetter(ctx, job, m.Data(), cause.Error(), deliveries, ack.Sequence)
	}
	if err != nil {
		w.cfg.Logger.Error("receipt job: dead-letter failed; retrying", "receipt", job.ReceiptID, "err", err)
		m.NakWithDelay(Backoff(w.cfg.Config, deliveries, nil))
		return
	}
	w.cfg.Logger.Warn("receipt job dead-lettered", "receipt", job.ReceiptID, "deliveries", deliveries, "permanent", permanent, "err", cause)
	w.cfg.Metrics.deadLettered()
	if permanent {
		m.TermWithReason("permanent failure: " + truncate(cause.Error(), 200))
		return
	}
	m.Ack()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Metrics are the pipeline's counters; a nil *Metrics records nothing.
type Metrics struct {
	processedTotal, failedTotal, deadTotal, permanentTotal prometheus.Counter
	seconds                                                prometheus.Histogram
}

// NewMetrics registers the pipeline's counters on reg (none when nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		processedTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_receipt_jobs_processed_total", Help: "Receipt jobs processed."}),
		failedTotal:    prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_receipt_jobs_failed_total", Help: "Receipt job deliveries that failed (retried or dead-lettered)."}),
		deadTotal:      prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_receipt_jobs_dead_lettered_total", Help: "Receipt jobs moved to the dead-letter stream."}),
		permanentTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_receipt_jobs_permanent_failures_total", Help: "Receipt jobs dead-lettered at their first failure because the image cannot be decoded (not retried)."}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "holdfast_receipt_job_seconds", Help: "Time to process one receipt job.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.processedTotal, m.failedTotal, m.deadTotal, m.permanentTotal, m.seconds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) processed(d time.Duration) {
	if m != nil {
		m.processedTotal.Inc()
		m.seconds.Observe(d.Seconds())
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.failedTotal.Inc()
	}
}

func (m *Metrics) permanentFailure() {
	if m != nil {
		m.permanentTotal.Inc()
	}
}

func (m *Metrics) deadLettered() {
	if m != nil {
		m.deadTotal.Inc()
	}
}

// settling is a job's message that ends the job, once, just before it is
// acknowledged, given back or terminated.
type settling struct {
	njs.Msg
	once sync.Once
	done func()
}

func (s *settling) end() { s.once.Do(s.done) }

func (s *settling) Ack() error                         { s.end(); return s.Msg.Ack() }
func (s *settling) Nak() error                         { s.end(); return s.Msg.Nak() }
func (s *settling) NakWithDelay(d time.Duration) error { s.end(); return s.Msg.NakWithDelay(d) }
func (s *settling) Term() error                        { s.end(); return s.Msg.Term() }
func (s *settling) TermWithReason(reason string) error { s.end(); return s.Msg.TermWithReason(reason) }
