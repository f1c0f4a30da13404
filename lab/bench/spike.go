package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// spikeTarget is what a spike run drives and watches: a way to enqueue
// receipt jobs and gauges of the workers.
type spikeTarget struct {
	// Enqueue queues job i (an upload through the API).
	Enqueue func(ctx context.Context, i int) error
	// Sample returns jobs in flight, jobs waiting, and database connections
	// held by the workers, now.
	Sample func(ctx context.Context) (inFlight, depth, dbConns int64, err error)
	// Outcome returns how many receipts are ready, and failed, now.
	Outcome func(ctx context.Context) (ready, failed int64, err error)
	// Recorded returns how many receipts are stored, whatever their status.
	Recorded func(ctx context.Context) (int64, error)
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

// maxOutstanding is the generator's limit of uploads awaiting an answer:
// an upload due while this many wait is not sent (and counted so).
const maxOutstanding = 4096

// SpikeResult is what a spike run measured.
type SpikeResult struct {
	Name                     string
	Offered                  int64     // uploads due by the spike's schedule
	Enqueued, EnqueueErrors  int64     // accepted (202); answered otherwise or failed in transport
	Refusals                 []Refusal // EnqueueErrors by reason, most frequent first
	NotSent                  int64     // due while maxOutstanding uploads awaited an answer
	UploadP50, UploadP99     time.Duration
	ReadyAtSpikeEnd          int64 // receipts processed while uploads arrived
	MaxInFlight, MaxDBConns  int64
	MaxDepth                 int64
	Refused, Errors, Retries int64
	Ready, Failed, Lost      int64         // Lost: accepted (202) without a receipt stored
	Pending                  int64         // stored, neither ready nor failed when the run ended
	Drain                    time.Duration // from the spike's end until nothing waits or runs
	Drained                  bool
	ReceiptsPerSec           float64 // ready receipts per second while draining
	CPUWhileDraining         float64 // busy share of all cores while draining
	Samples                  []SpikeSample
}

// runSpike enqueues jobs at cfg.Rate for cfg.Duration (an open loop),
// sampling the workers every 100 ms, then waits for the queue to drain.
func runSpike(ctx context.Context, name string, t *spikeTarget, cfg SpikeConfig) (*SpikeResult, error) {
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
		prev, _ := load.ReadCPU()
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
			cur, _ := load.ReadCPU()
			mu.Lock()
			res.Samples = append(res.Samples, SpikeSample{AtMS: time.Since(start).Milliseconds(), InFlight: in, Depth: depth, DBConns: conns, CPU: cur.BusySince(prev)})
			res.MaxInFlight, res.MaxDepth, res.MaxDBConns = max(res.MaxInFlight, in), max(res.MaxDepth, depth), max(res.MaxDBConns, conns)
			mu.Unlock()
			prev = cur
		}
	})

	fmt.Fprintf(progress, "  %s: enqueueing %.0f jobs/s for %s\n", name, cfg.Rate, cfg.Duration)
	var enqueued, enqErrs, attempted atomic.Int64
	var tally uploadTally
	up := load.OpenLoop(ctx, name+" enqueue", cfg.Rate, cfg.Duration, maxOutstanding, func(ctx context.Context, _ int, seq int64) (bool, error) {
		attempted.Add(1)
		if err := t.Enqueue(ctx, int(seq)); err != nil {
			enqErrs.Add(1)
			tally.add(err)
			return false, err
		}
		enqueued.Add(1)
		return true, nil
	})
	res.Enqueued, res.EnqueueErrors = enqueued.Load(), enqErrs.Load()
	res.Offered, res.NotSent, res.Refusals = up.Sent, up.Sent-attempted.Load(), tally.reasons()
	res.UploadP50, res.UploadP99 = up.P50, up.P99
	spikeEnd := time.Now()
	readyAtEnd, _, _ := t.Outcome(ctx)
	res.ReadyAtSpikeEnd = readyAtEnd
	cpuAtEnd, _ := load.ReadCPU()
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
	cpuDrained, _ := load.ReadCPU()
	stop()
	sampling.Wait()
	var err error
	res.Ready, res.Failed, err = t.Outcome(ctx)
	if err != nil {
		return nil, err
	}
	recorded, err := t.Recorded(ctx)
	if err != nil {
		return nil, err
	}
	res.Lost, res.Pending = max(0, res.Enqueued-recorded), recorded-res.Ready-res.Failed
	if res.Drain > 0 {
		res.ReceiptsPerSec = float64(res.Ready-readyAtEnd) / res.Drain.Seconds()
	}
	res.CPUWhileDraining = cpuDrained.BusySince(cpuAtEnd)
	if t.Counters != nil {
		res.Refused, res.Errors, res.Retries = t.Counters()
	}
	return res, nil
}

// printSpike writes spike results side by side.
func printSpike(w io.Writer, cap, dbBudget int, rs ...*SpikeResult) {
	type line struct {
		label string
		cells []string
	}
	var lines []line
	row := func(label string, f func(r *SpikeResult) string) {
		l := line{label: label}
		for _, r := range rs {
			l.cells = append(l.cells, f(r))
		}
		lines = append(lines, l)
	}
	defer func() {
		width := 34
		for _, l := range lines {
			width = max(width, len(l.label))
		}
		fmt.Fprintf(w, "%-*s", width, "")
		for _, r := range rs {
			fmt.Fprintf(w, " %22s", r.Name)
		}
		fmt.Fprintln(w)
		for _, l := range lines {
			fmt.Fprintf(w, "%-*s", width, l.label)
			for _, c := range l.cells {
				fmt.Fprintf(w, " %22s", c)
			}
			fmt.Fprintln(w)
		}
	}()
	row("uploads offered", func(r *SpikeResult) string { return fmt.Sprint(r.Offered) })
	row("accepted (202)", func(r *SpikeResult) string {
		return fmt.Sprintf("%d (%.1f%%)", r.Enqueued, 100*float64(r.Enqueued)/float64(max(r.Offered, 1)))
	})
	for _, reason := range refusalReasons(rs) {
		row("  refused: "+reason, func(r *SpikeResult) string { return fmt.Sprint(r.refused(reason)) })
	}
	row(fmt.Sprintf("  not sent (%d outstanding)", maxOutstanding), func(r *SpikeResult) string { return fmt.Sprint(r.NotSent) })
	row("accepted upload p50 / p99", func(r *SpikeResult) string {
		return fmt.Sprintf("%s / %s", r.UploadP50.Round(time.Millisecond), r.UploadP99.Round(time.Millisecond))
	})
	row(fmt.Sprintf("max jobs in flight (cap %d)", cap), func(r *SpikeResult) string { return fmt.Sprint(r.MaxInFlight) })
	row(fmt.Sprintf("max worker DB conns (budget %d)", dbBudget), func(r *SpikeResult) string { return fmt.Sprint(r.MaxDBConns) })
	row("max queue depth", func(r *SpikeResult) string { return fmt.Sprint(r.MaxDepth) })
	row("refused DB connections", func(r *SpikeResult) string { return fmt.Sprint(r.Refused) })
	row("errors / retries", func(r *SpikeResult) string { return fmt.Sprintf("%d / %d", r.Errors, r.Retries) })
	row("ready / failed / pending / lost", func(r *SpikeResult) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.Ready, r.Failed, r.Pending, r.Lost)
	})
	row("ready when the spike ended", func(r *SpikeResult) string { return fmt.Sprint(r.ReadyAtSpikeEnd) })
	row("drain time after the spike", func(r *SpikeResult) string {
		if !r.Drained {
			return fmt.Sprintf("not in %.0f s", r.Drain.Seconds())
		}
		return fmt.Sprintf("%.1f s", r.Drain.Seconds())
	})
	row("receipts/s while draining", func(r *SpikeResult) string { return fmt.Sprintf("%.0f", r.ReceiptsPerSec) })
	row("CPU busy while draining", func(r *SpikeResult) string { return fmt.Sprintf("%.0f%%", 100*r.CPUWhileDraining) })
}

// refusalReasons lists every reason any of rs refused an upload for.
func refusalReasons(rs []*SpikeResult) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		for _, x := range r.Refusals {
			if !seen[x.Reason] {
				seen[x.Reason] = true
				out = append(out, x.Reason)
			}
		}
	}
	return out
}

// refused returns how many uploads r refused for reason.
func (r *SpikeResult) refused(reason string) int64 {
	for _, x := range r.Refusals {
		if x.Reason == reason {
			return x.Count
		}
	}
	return 0
}
