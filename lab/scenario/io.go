package scenario

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/lab/report"
)

func init() {
	register(Scenario{
		Name: "io", Section: "Part 1, demo and mistake 1",
		Description: "50 calls to a downstream that answers in 200 ms: sequential, at most 20 at once, unbounded",
		Run:         runIO,
	})
}

// slowDownstream is a loopback HTTP server that answers every request after
// Delay, and counts how many requests it holds at once.
type slowDownstream struct {
	Delay         time.Duration
	inFlight, top atomic.Int64
}

func (d *slowDownstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	for {
		t := d.top.Load()
		if n <= t || d.top.CompareAndSwap(t, n) {
			break
		}
	}
	select {
	case <-time.After(d.Delay):
		io.WriteString(w, "ok\n")
	case <-r.Context().Done():
	}
}

// ioRun is one way of making the calls.
type ioRun struct {
	Name        string        `json:"name"`
	Calls       int           `json:"calls"`
	OK          int           `json:"ok"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	MaxInFlight int64         `json:"max_in_flight"` // at the downstream
}

// callAll makes calls GETs of url, at most limit at once (0: all at once,
// 1: one after another), and returns how many answered 200.
func callAll(ctx context.Context, client *http.Client, url string, calls, limit int) int {
	if limit <= 0 {
		limit = calls
	}
	sem := make(chan struct{}, limit)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range calls {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

func runIO(ctx context.Context, env *Env) (*report.Report, error) {
	calls := 50
	delay := pick(env.Scale, 20*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond)
	down := &slowDownstream{Delay: delay}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: down}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: calls}, Timeout: time.Minute}
	defer client.CloseIdleConnections()

	var runs []ioRun
	for _, v := range []struct {
		name  string
		limit int
	}{{"sequential", 1}, {"concurrent, at most 20", 20}, {"unbounded", 0}} {
		env.progressf("io: %s, %d calls of %v", v.name, calls, delay)
		down.top.Store(0)
		start := time.Now()
		ok := callAll(ctx, client, url, calls, v.limit)
		runs = append(runs, ioRun{Name: v.name, Calls: calls, OK: ok, Elapsed: time.Since(start), MaxInFlight: down.top.Load()})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	r := &report.Report{
		Claim: `A service makes 50 calls to downstream APIs, one after another. Each takes 200ms. Total: 10 seconds. […]
Fire the calls together […] and total time drops to ~200ms. […] Sequential: 15162ms / Concurrent: 3172ms`,
		Measured: fmt.Sprintf(`%d GETs to a downstream HTTP server on loopback that answers each after %v: one after another;
with at most 20 in flight (a semaphore, like errgroup.SetLimit); and all at once. The client keeps
connections alive. Expected: %d × %v sequentially, ⌈%d/20⌉ × %v bounded, about %v unbounded.`,
			calls, delay, calls, delay, calls, delay, delay),
		Columns: []string{"way", "calls", "answered 200", "total", "most in flight at the downstream"},
		Data:    runs,
		Chart:   &report.Chart{Title: fmt.Sprintf("%d calls of %v each: total time", calls, delay), YLabel: "total time, ms"},
	}
	for i, run := range runs {
		r.Rows = append(r.Rows, []string{run.Name, fmt.Sprint(run.Calls), fmt.Sprint(run.OK), msec(run.Elapsed), fmt.Sprint(run.MaxInFlight)})
		group := "naive (sequential)"
		if i > 0 {
			group = "concurrent"
		}
		r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: run.Name, Value: float64(run.Elapsed) / 1e6, Group: group})
	}
	r.Findings = []string{
		fmt.Sprintf("sequential / at most 20: %.1f× (the seed: 15,162 / 3,172 ms = 4.8×)", report.Ratio(float64(runs[0].Elapsed), float64(runs[1].Elapsed))),
		fmt.Sprintf("sequential / unbounded: %.1f×; unbounded held %d calls open at the downstream at once — harmless here, the mistake of the `unbounded` scenario against a database",
			report.Ratio(float64(runs[0].Elapsed), float64(runs[2].Elapsed)), runs[2].MaxInFlight),
	}
	return r, nil
}
