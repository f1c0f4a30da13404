package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Call sends one request of a load run: worker is the caller's index, seq a
// number unique within the run. It returns whether the request succeeded.
type Call func(ctx context.Context, worker int, seq int64) (ok bool, err error)

// Result is what a load run measured. Latencies are of successful calls.
type Result struct {
	Name       string
	Offered    float64       // open loop: the target rate, per second
	Sent       int64         // calls made
	OK         int64         // calls that succeeded
	Failed     int64         // calls that returned !ok without an error
	Errors     int64         // calls that returned an error (transport, timeout)
	Elapsed    time.Duration // from the first call to the last answer
	Throughput float64       // OK per second
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
	Max        time.Duration
	CPUBusy    float64 // share of the machine's CPU busy during the run (every process); 0 if not measured
}

// Check returns an error unless r is consistent with itself: every call
// counted once, the latency quantiles in order, a positive Elapsed and a
// throughput of OK per second of it.
func (r Result) Check() error {
	switch {
	case r.Sent != r.OK+r.Failed+r.Errors:
		return fmt.Errorf("%s: Sent %d, want OK %d + Failed %d + Errors %d", r.Name, r.Sent, r.OK, r.Failed, r.Errors)
	case !(r.P50 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max):
		return fmt.Errorf("%s: quantiles out of order: p50 %v, p99 %v, p99.9 %v, max %v", r.Name, r.P50, r.P99, r.P999, r.Max)
	case r.Elapsed <= 0:
		return fmt.Errorf("%s: Elapsed %v, want > 0", r.Name, r.Elapsed)
	}
	if want := float64(r.OK) / r.Elapsed.Seconds(); math.Abs(r.Throughput-want) > 1e-9*want {
		return fmt.Errorf("%s: Throughput %f, want OK/Elapsed = %f", r.Name, r.Throughput, want)
	}
	return nil
}

// tally counts the outcomes of a run's calls.
type tally struct{ sent, ok, failed, errs atomic.Int64 }

// add counts one call and reports whether it succeeded.
func (t *tally) add(good bool, err error) bool {
	t.sent.Add(1)
	switch {
	case err != nil:
		t.errs.Add(1)
	case good:
		t.ok.Add(1)
		return true
	default:
		t.failed.Add(1)
	}
	return false
}

func (t *tally) summarize(name string, recs []*recorder, elapsed time.Duration) Result {
	return summarize(name, recs, t.sent.Load(), t.ok.Load(), t.failed.Load(), t.errs.Load(), elapsed)
}

// recorder collects latencies of one worker; merged at the end.
type recorder struct{ lat []time.Duration }

func summarize(name string, recs []*recorder, sent, ok, failed, errs int64, elapsed time.Duration) Result {
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.lat...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res := Result{Name: name, Sent: sent, OK: ok, Failed: failed, Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		res.Throughput = float64(ok) / elapsed.Seconds()
	}
	res.P50, res.P99, res.P999 = quantile(all, 0.50), quantile(all, 0.99), quantile(all, 0.999)
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	return res
}

// Summarize returns the Result of a run that drove its own calls: sent in
// all, ok, failed (not ok, without an error) and errs, with the latencies
// of the successful ones, over elapsed. A loop of SQL batches reports in
// the same terms as the HTTP loops this way.
func Summarize(name string, latencies []time.Duration, sent, ok, failed, errs int64, elapsed time.Duration) Result {
	return summarize(name, []*recorder{{lat: latencies}}, sent, ok, failed, errs, elapsed)
}

// Peak returns the best throughput among rs.
func Peak(rs []Result) Result {
	var best Result
	for _, r := range rs {
		if r.Throughput > best.Throughput {
			best = r
		}
	}
	return best
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ClosedLoop runs workers that each send calls back to back until d has
// passed: the offered load adapts to the system's speed, so it measures
// capacity, not latency under a fixed load. Each worker makes one call at
// least (unless ctx is done), so that a machine too busy to start the
// workers within d still gets a result with calls in it.
func ClosedLoop(ctx context.Context, name string, workers int, d time.Duration, call Call) Result {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var seq atomic.Int64
	var t tally
	recs := make([]*recorder, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		recs[w] = &recorder{}
		wg.Go(func() {
			for first := true; first && parent.Err() == nil || ctx.Err() == nil; first = false {
				n := seq.Add(1)
				t0 := time.Now()
				good, err := call(context.WithoutCancel(ctx), w, n)
				if t.add(good, err) {
					recs[w].lat = append(recs[w].lat, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	return t.summarize(name, recs, time.Since(start))
}

// OpenLoop sends calls at a constant rate for d, whatever the system does,
// and measures each latency from the call's intended send time, so a stall
// shows up in the latencies instead of silently lowering the load
// (coordinated omission). At most maxInFlight calls are outstanding; a call
// that finds no free slot counts as an error.
func OpenLoop(ctx context.Context, name string, rate float64, d time.Duration, maxInFlight int, call Call) Result {
	_, res := OpenLoopAfter(ctx, name, rate, 0, d, maxInFlight, call)
	return res
}

// OpenLoopAfter is OpenLoop for warmup + d, one schedule without a pause,
// whose calls are told apart by their intended send time: those of the
// first warmup go to warm, the rest to res. So res measures the system
// already at the rate, not its ramp from idle, and warm shows that ramp.
// Each result's Elapsed runs from its first intended send to its last
// answer. A phase of positive length makes one call at least, even at a
// rate below one call per phase (a slow machine's peak, in a short run).
func OpenLoopAfter(ctx context.Context, name string, rate float64, warmup, d time.Duration, maxInFlight int, call Call) (warm, res Result) {
	interval := time.Duration(float64(time.Second) / rate)
	atLeastOne := func(span time.Duration) int64 {
		if span <= 0 {
			return 0
		}
		return max(1, int64(span/interval))
	}
	first := atLeastOne(warmup) // the first call res counts
	total := first + atLeastOne(d)
	slots := make(chan struct{}, maxInFlight)
	var mu sync.Mutex
	type phase struct {
		rec  recorder
		t    tally
		last time.Time // the last answer
	}
	phases := [2]*phase{{rec: recorder{lat: make([]time.Duration, 0, first)}}, {rec: recorder{lat: make([]time.Duration, 0, total-first)}}}
	var wg sync.WaitGroup
	start := time.Now()
	for i := int64(0); i < total && ctx.Err() == nil; i++ {
		ph := phases[0]
		if i >= first {
			ph = phases[1]
		}
		intended := start.Add(time.Duration(i) * interval)
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			ph.t.add(false, errNoSlot)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			good, err := call(context.WithValue(ctx, intendedKey{}, intended), int(i%int64(maxInFlight)), i) // see intendedTime
			now := time.Now()
			good = ph.t.add(good, err)
			mu.Lock()
			if good {
				ph.rec.lat = append(ph.rec.lat, now.Sub(intended))
			}
			if now.After(ph.last) {
				ph.last = now
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	summarize := func(ph *phase, from time.Time, name string) Result {
		r := ph.t.summarize(name, []*recorder{&ph.rec}, max(0, ph.last.Sub(from)))
		r.Offered = rate
		return r
	}
	warm = summarize(phases[0], start, name+", warm-up")
	res = summarize(phases[1], start.Add(time.Duration(first)*interval), name)
	return warm, res
}

// intendedKey carries an open-loop call's intended send time (see intendedTime).
type intendedKey struct{}

// intendedTime returns when OpenLoop meant to send the call whose context
// this is, so a call can time its own outcomes without coordinated
// omission; false outside OpenLoop.
func intendedTime(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(intendedKey{}).(time.Time)
	return t, ok
}

// errNoSlot counts an open-loop call that found every in-flight slot taken.
var errNoSlot = errors.New("no free slot")
