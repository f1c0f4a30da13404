package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// intendedKey carries an open-loop call's intended send time (see IntendedTime).
type intendedKey struct{}

// IntendedTime returns when OpenLoop meant to send the call whose context
// this is, so a call can time its own outcomes without coordinated
// omission; false outside OpenLoop.
func IntendedTime(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(intendedKey{}).(time.Time)
	return t, ok
}

// Send makes one request and returns its HTTP status, or a transport error.
type Send func(ctx context.Context, seq int64) (status int, err error)

// OverloadResult is one open-loop run against a server, its outcomes timed
// from each request's intended send time.
type OverloadResult struct {
	Name       string
	Offered    float64       // target rate, per second
	Duration   time.Duration // of the run
	Sent       int64         // requests sent
	NotSent    int64         // the generator had no free slot: it was saturated
	OK         int64         // 2xx
	Good       int64         // 2xx within GoodWithin of the intended send time, back before the run's end
	Done       int64         // 2xx back before the run's end: Done / Duration is the run's throughput
	Shed       int64         // 503 or 429: refused by the server
	Failed     int64         // any other status
	Errors     int64         // transport errors and client timeouts
	Goodput    float64       // Good per second
	P50, P99   time.Duration // of OK responses
	ShedP99    time.Duration // of shed responses
	HealthP50  time.Duration // /healthz probes during the run
	HealthP99  time.Duration
	HealthMax  time.Duration
	HealthFail int64 // probes that failed or were not 200
}

// ShedShare returns the share of sent requests the server shed.
func (r OverloadResult) ShedShare() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Shed) / float64(r.Sent)
}

// outcomes collects latencies by outcome, safe for concurrent use.
type outcomes struct {
	mu         sync.Mutex
	ok, shed   []time.Duration
	good, done int64 // good and 2xx responses that came back before the run's end
	failed     int64
	errs       int64
}

// RunOverload sends requests with send at a constant rate for d (at most
// maxInFlight outstanding), while /healthz at healthURL is probed every
// 50 ms on its own connection, each probe timed from its scheduled tick.
// A success counts as good if it came within goodWithin of its intended
// send time. Goodput counts the good responses that came back within the
// run's d, per second of d: the requests still outstanding when the run
// ends (up to maxInFlight of them) come back after it, and counting those
// too would add maxInFlight / d to every rate, more to a shorter run's.
func RunOverload(ctx context.Context, name string, rate float64, d time.Duration, maxInFlight int, goodWithin time.Duration, healthURL string, send Send) OverloadResult {
	var o outcomes
	stopProbe := ProbeHealth(ctx, healthURL, 50*time.Millisecond)
	end := time.Now().Add(d)
	res := OpenLoop(ctx, name, rate, d, maxInFlight, func(ctx context.Context, _ int, seq int64) (bool, error) {
		intended, _ := IntendedTime(ctx)
		status, err := send(ctx, seq)
		now := time.Now()
		lat, inRun := now.Sub(intended), !now.After(end)
		o.mu.Lock()
		defer o.mu.Unlock()
		switch {
		case err != nil:
			o.errs++
		case status >= 200 && status < 300:
			o.ok = append(o.ok, lat)
			if inRun {
				o.done++
			}
			if lat <= goodWithin && inRun {
				o.good++
			}
		case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
			o.shed = append(o.shed, lat)
		default:
			o.failed++
		}
		return err == nil, err
	})
	health := stopProbe()
	sortDurations(o.ok)
	sortDurations(o.shed)
	out := OverloadResult{
		Name: name, Offered: rate, Duration: res.Elapsed, NotSent: res.Errors - o.errs,
		OK: int64(len(o.ok)), Good: o.good, Done: o.done, Shed: int64(len(o.shed)), Failed: o.failed, Errors: o.errs,
		P50: quantile(o.ok, 0.5), P99: quantile(o.ok, 0.99), ShedP99: quantile(o.shed, 0.99),
		HealthP50: health.P50, HealthP99: health.P99, HealthMax: health.Max, HealthFail: health.Failed,
	}
	out.Sent = res.Sent - out.NotSent
	if d > 0 {
		out.Goodput = float64(o.good) / d.Seconds()
	}
	return out
}

func sortDurations(s []time.Duration) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }

// HealthStats are the /healthz probes of a run.
type HealthStats struct {
	Probes, Failed int64
	P50, P99, Max  time.Duration
}

// ProbeHealth GETs url every interval, each probe on a schedule whatever
// the previous one does (open loop, timed from its tick, 5 s timeout), on a
// client of its own, until the returned function is called; that function
// returns the latencies (see HealthTimeline for every probe's).
func ProbeHealth(ctx context.Context, url string, interval time.Duration) func() HealthStats {
	return StartHealthTimeline(ctx, url, interval).Stop
}

// TransferSend returns a Send that POSTs one transfer of 1 to 100 USD
// minor units between the accounts pick chooses, with the API key, a
// unique Idempotency-Key and, if timeout is positive, a Request-Timeout
// header of that many milliseconds (the client's patience).
func TransferSend(poster *Poster, key string, run int64, timeout time.Duration, pick func(*rand.Rand) (debit, credit string)) Send {
	header := ""
	if timeout > 0 {
		header = "Request-Timeout: " + strconv.FormatInt(timeout.Milliseconds(), 10) + "\r\n"
	}
	return transferSend(poster, key, run, header, pick)
}

// ExpiredSend returns a Send like TransferSend's whose requests carry
// Request-Timeout: 0, already expired: a protected server drops them
// before any work with a 503, its cheapest refusal.
func ExpiredSend(poster *Poster, key string, run int64, pick func(*rand.Rand) (debit, credit string)) Send {
	return transferSend(poster, key, run, "Request-Timeout: 0\r\n", pick)
}

func transferSend(poster *Poster, key string, run int64, header string, pick func(*rand.Rand) (debit, credit string)) Send {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(run), 1))
	prefix := "Content-Type: application/json\r\nAuthorization: Bearer " + key + "\r\n" + header +
		"Idempotency-Key: overload-" + strconv.FormatInt(run, 10) + "-"
	return func(ctx context.Context, seq int64) (int, error) {
		mu.Lock()
		debit, credit := pick(rng)
		amount := 1 + rng.IntN(100)
		mu.Unlock()
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, debit, credit, amount)
		header := strconv.AppendInt([]byte(prefix), seq, 10)
		return poster.Post(ctx, "/v1/transfers", append(header, "\r\n"...), body)
	}
}

// CPULoadResult is CPU-bound jobs run as fast as possible through a lane
// while /healthz is probed.
type CPULoadResult struct {
	Name          string
	Done, Refused int64
	Elapsed       time.Duration
	Health        HealthStats
}

// RunCPULoad runs workers goroutines that each submit CPU-bound jobs
// (CPUTask of iterations rounds) through do for d, while /healthz at
// healthURL is probed every 50 ms. A refused job's worker waits refusedWait
// before its next job, as a client would wait for a 503 to come back (a
// worker spinning on refusals would burn the cores itself).
func RunCPULoad(ctx context.Context, name string, workers, iterations int, d, refusedWait time.Duration, healthURL string, do func(context.Context, func() error) error) CPULoadResult {
	stop := ProbeHealth(ctx, healthURL, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := do(ctx, func() error { CPUTask(w*1_000_000+i, iterations); return nil })
				switch {
				case err == nil:
					done.Add(1)
				case ctx.Err() == nil:
					refused.Add(1)
					time.Sleep(refusedWait)
				}
			}
		})
	}
	wg.Wait()
	return CPULoadResult{Name: name, Done: done.Load(), Refused: refused.Load(), Elapsed: time.Since(start), Health: stop()}
}

// PrintOverload writes the open-loop runs side by side, protection on vs
// off at each load, with ratios, and the CPU runs.
func PrintOverload(w io.Writer, capacity float64, on, off []OverloadResult, cpu []CPULoadResult) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\ncapacity %.0f transfers/s (the higher of the closed loops' peak and a 2× open loop); open loop, good = 201 within 1 s and before the run's end\t\t\t\t\t\t\t\t\t\t\t\n", capacity)
	fmt.Fprintln(tw, "load\tprotection\toffered/s\tgoodput/s\tgoodput/capacity\tp50 ms\tp99 ms\tshed\tshed p99 ms\tother fail\terrors\tnot sent\thealthz p99 ms\t")
	row := func(label, prot string, r OverloadResult) {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.1f%%\t%s\t%d\t%d\t%d\t%s\t\n", label, prot, r.Offered, r.Goodput, ratio(r.Goodput, capacity),
			ms(r.P50), ms(r.P99), 100*r.ShedShare(), ms(r.ShedP99), r.Failed, r.Errors, r.NotSent, ms(r.HealthP99))
	}
	for i := range max(len(on), len(off)) {
		if i < len(on) {
			row(on[i].Name, "on", on[i])
		}
		if i < len(off) {
			row(off[i].Name, "off", off[i])
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for i := range min(len(on), len(off)) {
		fmt.Fprintf(w, "%-5s on/off: goodput %.2f×, p99 %.2f×, healthz p99 %.2f×\n", on[i].Name,
			ratio(on[i].Goodput, off[i].Goodput), ratio(float64(on[i].P99), float64(off[i].P99)), ratio(float64(on[i].HealthP99), float64(off[i].HealthP99)))
	}
	if len(cpu) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CPU-bound jobs\tjobs/s\trefused\thealthz p50 ms\thealthz p99 ms\thealthz max ms\tprobes failed\t")
	for _, c := range cpu {
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%s\t%s\t%s\t%d\t\n", c.Name, float64(c.Done)/c.Elapsed.Seconds(), c.Refused,
			ms(c.Health.P50), ms(c.Health.P99), ms(c.Health.Max), c.Health.Failed)
	}
	tw.Flush()
}
