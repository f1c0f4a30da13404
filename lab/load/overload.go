package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/lab/report"
)

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
	stopProbe := probeHealth(ctx, healthURL, 50*time.Millisecond)
	end := time.Now().Add(d)
	res := OpenLoop(ctx, name, rate, d, maxInFlight, func(ctx context.Context, _ int, seq int64) (bool, error) {
		intended, _ := intendedTime(ctx)
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

// PrintOverload writes the open-loop runs side by side, protection on vs
// off at each load, with ratios, and the CPU runs.
func PrintOverload(w io.Writer, capacity float64, on, off []OverloadResult, cpu []CPUJobsResult) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\ncapacity %.0f transfers/s (the higher of the closed loops' peak and a 2× open loop); open loop, good = 201 within 1 s and before the run's end\t\t\t\t\t\t\t\t\t\t\t\n", capacity)
	fmt.Fprintln(tw, "load\tprotection\toffered/s\tgoodput/s\tgoodput/capacity\tp50 ms\tp99 ms\tshed\tshed p99 ms\tother fail\terrors\tnot sent\thealthz p99 ms\t")
	row := func(label, prot string, r OverloadResult) {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t%.1f%%\t%s\t%d\t%d\t%d\t%s\t\n", label, prot, r.Offered, r.Goodput, report.Ratio(r.Goodput, capacity),
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
			report.Ratio(on[i].Goodput, off[i].Goodput), report.Ratio(float64(on[i].P99), float64(off[i].P99)), report.Ratio(float64(on[i].HealthP99), float64(off[i].HealthP99)))
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
