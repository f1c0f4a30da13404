package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// LagSample is the consumers' lag at a moment of a burst run.
type LagSample struct {
	AtMS  int64  `json:"at_ms"` // since the run began
	Lag   int64  `json:"lag"`
	Phase string `json:"phase"`
}

// BurstResult is what a burst run measured.
type BurstResult struct {
	ConsumerRate          float64       // events per second the slowed consumers sustain (measured)
	NormalRate, BurstRate float64       // events per second offered
	Before, During        load.Result   // producer requests before and during the burst
	Control               load.Result   // the burst rate again, consumers paused: what the rate alone costs
	PeakLag               int64         // events
	Drain                 time.Duration // from the burst's end until the lag was back to normal
	Drained               bool
	Produced              int64         // events acknowledged (202) during the run
	Audited, Analyzed     int64         // what the consumers applied for the run's tenant
	Lost                  int64         // Produced - min(Audited, Analyzed); must be 0
	Duplicated            int64         // max(Audited, Analyzed) - Produced; must be 0
	Refusals              map[int]int64 // responses other than 202, by status
	Samples               []LagSample
}

// BurstConfig shapes a burst run.
type BurstConfig struct {
	Tenant     string        // the tenant the target's key belongs to
	Batch      int           // events per request; default 20
	Warmup     time.Duration // normal rate before the burst; default 20s
	Burst      time.Duration // 10× the consumers' rate; default 30s
	MaxDrain   time.Duration // give up waiting for the lag after this; default 10m
	Multiplier float64       // burst rate / consumer rate; default 10
	Normal     float64       // normal rate / consumer rate; default 0.25
	Control    time.Duration // after the check, the burst rate with consumers paused; default 10s; negative: none
	Progress   io.Writer     // a line per phase; default none
}

// RunBurst measures the consumers' rate, then produces at a normal rate,
// then at Multiplier × the consumers' rate for Burst, then at the normal
// rate again until the lag is back; it samples the lag every 250 ms and
// finally checks that the consumers applied exactly what was produced. It
// returns an error when the target's consumers cannot be paused, resumed
// or read.
func RunBurst(ctx context.Context, t *EventTarget, cfg BurstConfig) (*BurstResult, error) {
	cfg = cfg.withDefaults()
	r := &burstRun{t: t, cfg: cfg, res: &BurstResult{Refusals: map[int]int64{}}, body: eventBody(cfg.Batch)}
	if err := r.measureConsumers(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "  consumers sustain %.0f events/s; normal %.0f/s, burst %.0f/s\n", r.res.ConsumerRate, r.res.NormalRate, r.res.BurstRate)
	r.produce(ctx)
	if err := r.check(ctx); err != nil {
		return nil, err
	}
	if err := r.control(ctx); err != nil {
		return nil, err
	}
	return r.res, nil
}

func (cfg BurstConfig) withDefaults() BurstConfig {
	if cfg.Batch == 0 {
		cfg.Batch = 20
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 20 * time.Second
	}
	if cfg.Burst == 0 {
		cfg.Burst = 30 * time.Second
	}
	if cfg.MaxDrain == 0 {
		cfg.MaxDrain = 10 * time.Minute
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = 10
	}
	if cfg.Normal == 0 {
		cfg.Normal = 0.25
	}
	if cfg.Control == 0 {
		cfg.Control = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	return cfg
}

// burstRun is one RunBurst: its target, the batch it posts, and what it
// measured.
type burstRun struct {
	t        *EventTarget
	cfg      BurstConfig
	res      *BurstResult
	body     []byte
	produced atomic.Int64

	mu    sync.Mutex // guards phase, the refusals, the samples and the peak lag
	phase string
}

// post sends one batch: a load.Call that counts the events produced and
// the refusals by status.
func (r *burstRun) post(ctx context.Context, _ int, _ int64) (bool, error) {
	n, status, err := r.t.postEvents(ctx, r.body)
	r.produced.Add(int64(n))
	if err == nil && status != http.StatusAccepted {
		r.mu.Lock()
		r.res.Refusals[status]++
		r.mu.Unlock()
	}
	return n > 0, err
}

// reqRate is the request rate that produces events per second.
func (r *burstRun) reqRate(events float64) float64 { return max(events/float64(r.cfg.Batch), 0.5) }

// measureConsumers measures the consumers' rate: a backlog produced while
// they are paused, timed as they drain it; the run's rates follow from it.
func (r *burstRun) measureConsumers(ctx context.Context) error {
	t := r.t
	if err := t.Pause(ctx); err != nil {
		return err
	}
	const backlogBatches = 250
	for range backlogBatches {
		if _, err := r.post(ctx, 0, 0); err != nil {
			t.Resume(ctx)
			return err
		}
	}
	backlog, err := t.Lag(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := t.Resume(ctx); err != nil {
		return err
	}
	for {
		lag, err := t.Lag(ctx)
		if err != nil {
			return err
		}
		if lag == 0 {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	res := r.res
	res.ConsumerRate = float64(backlog) / time.Since(start).Seconds()
	res.NormalRate, res.BurstRate = r.cfg.Normal*res.ConsumerRate, r.cfg.Multiplier*res.ConsumerRate
	return nil
}

// produce runs the three phases, before, burst and after (until the lag
// is back to normal), while it samples the lag.
func (r *burstRun) produce(ctx context.Context) {
	cfg, res := r.cfg, r.res
	r.phase = "before"
	runStart := time.Now()
	sctx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() { r.sampleLag(sctx, runStart) })

	fmt.Fprintf(cfg.Progress, "  before the burst: %s at %.0f events/s\n", cfg.Warmup, res.NormalRate)
	res.Before = load.OpenLoop(ctx, "before", r.reqRate(res.NormalRate), cfg.Warmup, 4096, r.post)
	r.setPhase("burst")
	fmt.Fprintf(cfg.Progress, "  burst: %s at %.0f events/s\n", cfg.Burst, res.BurstRate)
	res.During = load.OpenLoop(ctx, "burst", r.reqRate(res.BurstRate), cfg.Burst, 4096, r.post)
	r.setPhase("after")
	burstEnd := time.Now()
	fmt.Fprintf(cfg.Progress, "  after: normal rate until the lag is back (at most %s)\n", cfg.MaxDrain)
	normalLag := r.normalLag()
	for time.Since(burstEnd) < cfg.MaxDrain && ctx.Err() == nil {
		load.OpenLoop(ctx, "after", r.reqRate(res.NormalRate), time.Second, 4096, r.post)
		lag, err := r.t.Lag(ctx)
		if err == nil && lag <= normalLag {
			res.Drain, res.Drained = time.Since(burstEnd), true
			break
		}
	}
	stopSampling()
	sampling.Wait()
}

func (r *burstRun) setPhase(p string) { r.mu.Lock(); r.phase = p; r.mu.Unlock() }

// sampleLag samples the lag every 250 ms until ctx ends.
func (r *burstRun) sampleLag(ctx context.Context, runStart time.Time) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lag, err := r.t.Lag(ctx)
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.res.Samples = append(r.res.Samples, LagSample{AtMS: time.Since(runStart).Milliseconds(), Lag: lag, Phase: r.phase})
		r.res.PeakLag = max(r.res.PeakLag, lag)
		r.mu.Unlock()
	}
}

// normalLag is the lag that counts as back to normal after the burst: no
// more than twice the most seen before it (at the normal rate the groups
// always hold a batch or two).
func (r *burstRun) normalLag() int64 {
	normal := int64(2 * r.cfg.Batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.res.Samples {
		if s.Phase == "before" {
			normal = max(normal, 2*s.Lag)
		}
	}
	return normal
}

// check waits (at most MaxDrain) for the consumers to apply the last
// events, then counts what was lost or applied twice.
func (r *burstRun) check(ctx context.Context) error {
	res := r.res
	res.Produced = r.produced.Load()
	fmt.Fprintf(r.cfg.Progress, "  checking: %d events produced\n", res.Produced)
	deadline := time.Now().Add(r.cfg.MaxDrain)
	for {
		var err error
		res.Audited, res.Analyzed, err = r.t.Applied(ctx, r.cfg.Tenant)
		if err != nil {
			return err
		}
		if res.Audited >= res.Produced && res.Analyzed >= res.Produced || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.Lost = max(0, res.Produced-min(res.Audited, res.Analyzed))
	res.Duplicated = max(0, max(res.Audited, res.Analyzed)-res.Produced)
	return nil
}

// control runs the burst's rate with the consumers doing nothing at all.
// If the producers' p99 is the same as during the burst, what raised it
// was the request rate on this machine, not the consumers' slowness.
func (r *burstRun) control(ctx context.Context) error {
	if r.cfg.Control <= 0 {
		return nil
	}
	fmt.Fprintf(r.cfg.Progress, "  control: %s at %.0f events/s with the consumers paused\n", r.cfg.Control, r.res.BurstRate)
	if err := r.t.Pause(ctx); err != nil {
		return err
	}
	r.res.Control = load.OpenLoop(ctx, "burst rate, consumers paused", r.reqRate(r.res.BurstRate), r.cfg.Control, 4096,
		func(ctx context.Context, _ int, _ int64) (bool, error) {
			n, err := r.t.PostEvents(ctx, r.body)
			return n > 0, err
		})
	return r.t.Resume(ctx)
}

// printBurst writes a burst run's figures.
func printBurst(w io.Writer, r *BurstResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(w, "consumers (slowed) sustain      %10.0f events/s\n", r.ConsumerRate)
	fmt.Fprintf(w, "offered: normal %.0f/s, burst %.0f/s (%.0f×)\n", r.NormalRate, r.BurstRate, r.BurstRate/max(r.ConsumerRate, 1))
	fmt.Fprintf(w, "%-30s %12s %12s %10s %10s\n", "producer", "p50", "p99", "ok", "refused")
	for _, x := range []load.Result{r.Before, r.During, r.Control} {
		if x.Name == "" {
			continue
		}
		fmt.Fprintf(w, "%-30s %12s %12s %10d %10d\n", x.Name, ms(x.P50), ms(x.P99), x.OK, x.Failed+x.Errors)
	}
	ratio := 0.0
	if r.Before.P99 > 0 {
		ratio = float64(r.During.P99) / float64(r.Before.P99)
	}
	fmt.Fprintf(w, "producer p99 during / before burst: %.2f×\n", ratio)
	if r.Control.P99 > 0 {
		fmt.Fprintf(w, "producer p99 during the burst / at its rate with consumers paused (control): %.2f×\n", float64(r.During.P99)/float64(r.Control.P99))
	}
	if len(r.Refusals) > 0 {
		fmt.Fprintf(w, "refused by status: %v\n", r.Refusals)
	}
	drain := "not drained"
	if r.Drained {
		drain = fmt.Sprintf("%.1f s", r.Drain.Seconds())
	}
	fmt.Fprintf(w, "peak lag %d events; drain time %s\n", r.PeakLag, drain)
	fmt.Fprintf(w, "produced %d, audited %d, analytics %d: lost %d, duplicated %d\n", r.Produced, r.Audited, r.Analyzed, r.Lost, r.Duplicated)
	var b strings.Builder
	step := max(1, len(r.Samples)/24)
	for i := 0; i < len(r.Samples); i += step {
		s := r.Samples[i]
		fmt.Fprintf(&b, " %.0fs:%d", float64(s.AtMS)/1000, s.Lag)
	}
	fmt.Fprintf(w, "lag over time:%s\n", b.String())
}
