package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/media"
)

// SpikeTarget is what a spike run drives and watches: a way to enqueue
// receipt jobs and gauges of the workers.
type SpikeTarget struct {
	// Enqueue queues job i (an upload through the API).
	Enqueue func(ctx context.Context, i int) error
	// Sample returns jobs in flight, jobs waiting, and database connections
	// held by the workers, now.
	Sample func(ctx context.Context) (inFlight, depth, dbConns int64, err error)
	// Outcome returns how many receipts are ready, and failed, now.
	Outcome func(ctx context.Context) (ready, failed int64, err error)
	// Refused returns database connections refused so far, errors and retries.
	Counters func() (refused, errs, retries int64)
}

// SpikeConfig shapes a spike run.
type SpikeConfig struct {
	Rate     float64       // jobs per second while the spike lasts (50,000/min = 833/s)
	Duration time.Duration // of the spike
	MaxDrain time.Duration // give up waiting for the queue after this
	Cap      int           // jobs in flight across the capped run's two replicas
	DBConns  int           // worker connections of each of its replicas
	Progress io.Writer
}

// SpikeSample is one 100 ms sample.
type SpikeSample struct {
	AtMS     int64   `json:"at_ms"`
	InFlight int64   `json:"in_flight"`
	Depth    int64   `json:"depth"`
	DBConns  int64   `json:"db_conns"`
	CPU      float64 `json:"cpu"` // busy share of all cores since the last sample
}

// SpikeResult is what a spike run measured.
type SpikeResult struct {
	Name                     string
	Enqueued, EnqueueErrors  int64
	MaxInFlight, MaxDBConns  int64
	MaxDepth                 int64
	Refused, Errors, Retries int64
	Ready, Failed, Lost      int64
	Drain                    time.Duration // from the spike's end until nothing waits or runs
	Drained                  bool
	ReceiptsPerSec           float64 // ready receipts per second while draining
	CPUWhileDraining         float64 // busy share of all cores while draining
	Samples                  []SpikeSample
}

// RunSpike enqueues jobs at cfg.Rate for cfg.Duration (an open loop),
// sampling the workers every 100 ms, then waits for the queue to drain.
func RunSpike(ctx context.Context, name string, t *SpikeTarget, cfg SpikeConfig) (*SpikeResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	res := &SpikeResult{Name: name}
	start := time.Now()
	var mu sync.Mutex
	sctx, stop := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		prev, _ := readCPU()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			in, depth, conns, err := t.Sample(sctx)
			if err != nil {
				continue
			}
			cur, _ := readCPU()
			mu.Lock()
			res.Samples = append(res.Samples, SpikeSample{AtMS: time.Since(start).Milliseconds(), InFlight: in, Depth: depth, DBConns: conns, CPU: cur.busySince(prev)})
			res.MaxInFlight, res.MaxDepth, res.MaxDBConns = max(res.MaxInFlight, in), max(res.MaxDepth, depth), max(res.MaxDBConns, conns)
			mu.Unlock()
			prev = cur
		}
	})

	fmt.Fprintf(progress, "  %s: enqueueing %.0f jobs/s for %s\n", name, cfg.Rate, cfg.Duration)
	var enqueued, enqErrs atomic.Int64
	OpenLoop(ctx, name+" enqueue", cfg.Rate, cfg.Duration, 4096, func(ctx context.Context, _ int, seq int64) (bool, error) {
		if err := t.Enqueue(ctx, int(seq)); err != nil {
			enqErrs.Add(1)
			return false, err
		}
		enqueued.Add(1)
		return true, nil
	})
	res.Enqueued, res.EnqueueErrors = enqueued.Load(), enqErrs.Load()
	spikeEnd := time.Now()
	readyAtEnd, _, _ := t.Outcome(ctx)
	cpuAtEnd, _ := readCPU()
	fmt.Fprintf(progress, "  %s: %d enqueued; draining (at most %s)\n", name, res.Enqueued, cfg.MaxDrain)
	for time.Since(spikeEnd) < cfg.MaxDrain && ctx.Err() == nil {
		ready, failed, err := t.Outcome(ctx)
		if err == nil && ready+failed >= res.Enqueued {
			res.Drain, res.Drained = time.Since(spikeEnd), true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !res.Drained {
		res.Drain = time.Since(spikeEnd)
	}
	cpuDrained, _ := readCPU()
	stop()
	sampling.Wait()
	var err error
	res.Ready, res.Failed, err = t.Outcome(ctx)
	if err != nil {
		return nil, err
	}
	res.Lost = max(0, res.Enqueued-res.Ready-res.Failed)
	if res.Drain > 0 {
		res.ReceiptsPerSec = float64(res.Ready-readyAtEnd) / res.Drain.Seconds()
	}
	res.CPUWhileDraining = cpuDrained.busySince(cpuAtEnd)
	if t.Counters != nil {
		res.Refused, res.Errors, res.Retries = t.Counters()
	}
	return res, nil
}

// cpuTimes are the machine's CPU counters from /proc/stat.
type cpuTimes struct{ busy, total uint64 }

func readCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var c cpuTimes
	for i, s := range f[1:] {
		n, _ := strconv.ParseUint(s, 10, 64)
		c.total += n
		if i != 3 && i != 4 { // idle, iowait
			c.busy += n
		}
	}
	return c, nil
}

func (c cpuTimes) busySince(prev cpuTimes) float64 {
	if c.total <= prev.total {
		return 0
	}
	return float64(c.busy-prev.busy) / float64(c.total-prev.total)
}

// PrintSpike writes spike results side by side.
func PrintSpike(w io.Writer, cap, dbBudget int, rs ...*SpikeResult) {
	fmt.Fprintf(w, "%-34s", "")
	for _, r := range rs {
		fmt.Fprintf(w, " %22s", r.Name)
	}
	fmt.Fprintln(w)
	row := func(label string, f func(r *SpikeResult) string) {
		fmt.Fprintf(w, "%-34s", label)
		for _, r := range rs {
			fmt.Fprintf(w, " %22s", f(r))
		}
		fmt.Fprintln(w)
	}
	row("jobs enqueued (upload errors)", func(r *SpikeResult) string { return fmt.Sprintf("%d (%d)", r.Enqueued, r.EnqueueErrors) })
	row(fmt.Sprintf("max jobs in flight (cap %d)", cap), func(r *SpikeResult) string { return fmt.Sprint(r.MaxInFlight) })
	row(fmt.Sprintf("max worker DB conns (budget %d)", dbBudget), func(r *SpikeResult) string { return fmt.Sprint(r.MaxDBConns) })
	row("max queue depth", func(r *SpikeResult) string { return fmt.Sprint(r.MaxDepth) })
	row("refused DB connections", func(r *SpikeResult) string { return fmt.Sprint(r.Refused) })
	row("errors / retries", func(r *SpikeResult) string { return fmt.Sprintf("%d / %d", r.Errors, r.Retries) })
	row("ready / failed / lost", func(r *SpikeResult) string { return fmt.Sprintf("%d / %d / %d", r.Ready, r.Failed, r.Lost) })
	row("drain time after the spike", func(r *SpikeResult) string {
		if !r.Drained {
			return fmt.Sprintf("not in %.0f s", r.Drain.Seconds())
		}
		return fmt.Sprintf("%.1f s", r.Drain.Seconds())
	})
	row("receipts/s while draining", func(r *SpikeResult) string { return fmt.Sprintf("%.0f", r.ReceiptsPerSec) })
	row("CPU busy while draining", func(r *SpikeResult) string { return fmt.Sprintf("%.0f%%", 100*r.CPUWhileDraining) })
}

// NaiveWorkers is the spike's naive consumer: for every message, at once, a
// goroutine that opens its own database connection, processes the image
// and acknowledges; nothing bounds how many run. A refused connection is
// NAKed for immediate redelivery, so refusals come back as a herd. It is
// real code that really fails, never part of the service.
type NaiveWorkers struct {
	DBURL string
	Blobs *blob.Store
	Cons  njs.Consumer

	running, conns         atomic.Int64
	refused, errs, retries atomic.Int64
	consume                njs.ConsumeContext
	wg                     sync.WaitGroup
}

// Start consumes until Stop.
func (n *NaiveWorkers) Start(ctx context.Context) error {
	cc, err := n.Cons.Consume(func(m njs.Msg) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.running.Add(1)
			defer n.running.Add(-1)
			if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
				n.retries.Add(1)
			}
			if err := n.handle(ctx, m); err != nil {
				n.errs.Add(1)
				m.Nak() // right back: the herd
				return
			}
			m.Ack()
		}()
	}, njs.PullMaxMessages(5000))
	if err != nil {
		return err
	}
	n.consume = cc
	return nil
}

// Stop stops consuming and waits for the goroutines.
func (n *NaiveWorkers) Stop() {
	if n.consume != nil {
		n.consume.Stop()
	}
	n.wg.Wait()
}

// Running returns the goroutines at work, and the connections they hold.
func (n *NaiveWorkers) Running() (int64, int64) { return n.running.Load(), n.conns.Load() }

// Counters returns refused connections, errors and retries.
func (n *NaiveWorkers) Counters() (int64, int64, int64) {
	return n.refused.Load(), n.errs.Load(), n.retries.Load()
}

func (n *NaiveWorkers) handle(ctx context.Context, m njs.Msg) error {
	var job holdfast.ReceiptJob
	if err := json.Unmarshal(m.Data(), &job); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, n.DBURL)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "53300" || pe.Code == "53400") || strings.Contains(err.Error(), "too many clients") {
			n.refused.Add(1)
		}
		return err
	}
	n.conns.Add(1)
	defer func() { conn.Close(context.WithoutCancel(ctx)); n.conns.Add(-1) }()
	var tenantName string
	var created time.Time
	if err := conn.QueryRow(ctx, `SELECT t.name, r.created_at FROM receipts r JOIN tenants t ON t.id = r.tenant_id WHERE r.id = $1`,
		job.ReceiptID).Scan(&tenantName, &created); err != nil {
		return err
	}
	f, _, err := n.Blobs.Open(ctx, job.OriginalKey)
	if err != nil {
		return err
	}
	src, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	vs, err := media.ProcessContext(ctx, src, media.Options{Tenant: tenantName, Date: created})
	if err != nil {
		return err
	}
	variants := map[string]map[string]any{}
	for _, v := range vs.All() {
		key, err := n.Blobs.PutBytes(ctx, v.Data)
		if err != nil {
			return err
		}
		variants[v.Name] = map[string]any{"key": key, "content_type": v.ContentType(), "width": v.Width, "height": v.Height, "size": len(v.Data)}
	}
	b, _ := json.Marshal(variants)
	_, err = conn.Exec(ctx, `UPDATE receipts SET status = 'ready', variants = $2, attempts = attempts + 1, updated_at = now() WHERE id = $1`, job.ReceiptID, b)
	return err
}
