package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/lifecycle"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/overload"
)

func init() {
	register(Scenario{
		Name: "health", Section: "Part 1, mistake 2",
		Description: "CPU-heavy requests on the request path vs in the CPU lane: /healthz latency over time",
		Run:         runHealth,
	})
}

// cpuServer is a lab-only HTTP server (never part of the API): GET /healthz
// answers at once; POST /work runs CPUTask of Iterations rounds — on the
// request's goroutine when Lane is nil (the naive way: every request gets a
// core to fight for), else through Lane, answering 503 when the lane
// refuses.
type cpuServer struct {
	Iterations int
	Lane       *overload.Lane // nil: work on the request goroutine, unbounded

	running, top atomic.Int64 // jobs running now, and the most at once
	seq          atomic.Int64
}

// ServeHTTP serves /healthz and /work.
func (s *cpuServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok\n")
	case "/work":
		var sum uint64
		job := func() error {
			n := s.running.Add(1)
			defer s.running.Add(-1)
			for t := s.top.Load(); n > t && !s.top.CompareAndSwap(t, n); t = s.top.Load() {
			}
			sum = load.CPUTask(int(s.seq.Add(1)), s.Iterations)
			return nil
		}
		var err error
		if s.Lane == nil {
			err = job()
		} else {
			err = s.Lane.Do(r.Context(), job)
		}
		switch {
		case errors.Is(err, overload.ErrLaneFull):
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy with CPU-bound work", http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			io.WriteString(w, strconv.FormatUint(sum, 16)+"\n")
		}
	default:
		http.NotFound(w, r)
	}
}

// MostAtOnce returns the most jobs that ran at the same time.
func (s *cpuServer) MostAtOnce() int64 { return s.top.Load() }

// healthRun is one way of the health scenario: /healthz probed while
// clients keep /work busy.
type healthRun struct {
	Name       string              `json:"name"`
	LaneSize   int                 `json:"lane_size"`  // 0: no lane
	LaneQueue  int                 `json:"lane_queue"` // callers that may wait for the lane
	Clients    int                 `json:"clients"`
	Work       load.Result         `json:"work"`         // the clients' /work requests (Failed: 503s)
	MostAtOnce int64               `json:"most_at_once"` // CPU jobs running at the same time, at most
	Health     load.HealthStats    `json:"health"`       // the probes during the load
	Idle       load.HealthStats    `json:"idle"`         // the probes before and after it
	LoadFrom   float64             `json:"load_from_s"`  // when the load began and ended, on Samples' clock
	LoadTo     float64             `json:"load_to_s"`
	Samples    []load.HealthSample `json:"samples"`
}

// healthConfig shapes a health run.
type healthConfig struct {
	Clients     int           // concurrent /work clients, each sending back to back
	Iterations  int           // CPUTask rounds per /work
	Load        time.Duration // how long the clients send
	Idle        time.Duration // probing without load before and after
	RefusedWait time.Duration // a client's pause after a 503, as it would wait for Retry-After
	LaneQueue   int           // the lane's queue, for the record
}

// measureHealth serves a cpuServer with lane (nil: the naive way) on loopback,
// probes its /healthz every 50 ms throughout, and for cfg.Load keeps
// cfg.Clients clients sending /work back to back between cfg.Idle of quiet
// before and after.
func measureHealth(ctx context.Context, name string, lane *overload.Lane, cfg healthConfig) (healthRun, error) {
	srv := &cpuServer{Iterations: cfg.Iterations, Lane: lane}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return healthRun{}, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}
	defer client.CloseIdleConnections()

	run := healthRun{Name: name, Clients: cfg.Clients}
	if lane != nil {
		run.LaneSize, run.LaneQueue = lane.Size(), cfg.LaneQueue
	}
	start := time.Now()
	probe := load.StartHealthTimeline(ctx, base+"/healthz", 50*time.Millisecond)
	lifecycle.Sleep(ctx, cfg.Idle)
	run.LoadFrom = time.Since(start).Seconds()
	run.Work = load.ClosedLoop(ctx, name, cfg.Clients, cfg.Load, func(ctx context.Context, _ int, _ int64) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/work", nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			lifecycle.Sleep(ctx, cfg.RefusedWait)
		}
		return resp.StatusCode == http.StatusOK, nil
	})
	run.LoadTo = time.Since(start).Seconds()
	lifecycle.Sleep(ctx, cfg.Idle)
	probe.Stop()
	run.Samples = probe.Samples
	run.MostAtOnce = srv.MostAtOnce()
	// The figures of the probes during the load, and of the quiet around it.
	var during, idle []load.HealthSample
	for _, s := range run.Samples {
		if at := float64(s.AtMS) / 1000; at >= run.LoadFrom && at < run.LoadTo {
			during = append(during, s)
		} else {
			idle = append(idle, s)
		}
	}
	run.Health, run.Idle = load.SummarizeHealth(during), load.SummarizeHealth(idle)
	return run, ctx.Err()
}

func runHealth(ctx context.Context, env *Env) (*report.Report, error) {
	cfg := healthConfig{
		Clients:     pick(env.Scale, 8, 32, 64),
		Iterations:  pick(env.Scale, 5_000, 20_000, 20_000),
		Load:        pick(env.Scale, time.Second, 5*time.Second, 30*time.Second),
		Idle:        pick(env.Scale, 300*time.Millisecond, time.Second, 2*time.Second),
		RefusedWait: 10 * time.Millisecond,
	}
	// The API's lane: GOMAXPROCS-1 jobs at once (at least 1), as many waiting.
	size := max(1, runtime.GOMAXPROCS(0)-1)
	cfg.LaneQueue = size
	lane, err := overload.NewLane(overload.LaneConfig{Name: "lab", Size: size, Queue: cfg.LaneQueue})
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	load.CPUTask(0, cfg.Iterations)
	per := time.Since(t0)
	var runs []healthRun
	for _, w := range []struct {
		name string
		lane *overload.Lane
	}{{"naive: work on the request goroutine", nil}, {fmt.Sprintf("Holdfast: CPU lane of %d", lane.Size()), lane}} {
		env.progressf("health: %s, %d clients for %v", w.name, cfg.Clients, cfg.Load)
		run, err := measureHealth(ctx, w.name, w.lane, cfg)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	naive, hf := runs[0], runs[1]
	r := &report.Report{
		Claim: `A request handler that resizes an image, parses a large JSON document or hashes a password blocks the
event loop […] While it runs, nothing else is served — not even the health check. The load balancer's probe times
out, the instance is marked unhealthy and taken out of rotation, its traffic moves to the others, which then
fall over the same way.`,
		Measured: fmt.Sprintf(`A lab-only HTTP server on loopback (in lab/scenario, not part of the API) with GET /healthz and POST /work,
which runs %d rounds of SHA-256 (%v of one core here). %d clients send /work back to back for %v while
/healthz is probed every 50 ms on a connection of its own, each probe timed from its scheduled tick; %v of quiet
before and after. Naive: the work runs on the request goroutine, as many at once as requests arrive. Holdfast:
the work runs through overload.Lane (the API's CPU lane, default size GOMAXPROCS-1 = %d, as many waiting),
which answers 503 beyond that; a refused client waits %v before its next request. GOMAXPROCS is %d. Go
preempts a running goroutine, so unlike Node's event loop the naive server still answers /healthz: the probe
waits its turn among every runnable request, which is what the lane bounds.`,
			cfg.Iterations, per.Round(10*time.Microsecond), cfg.Clients, cfg.Load, cfg.Idle, lane.Size(), cfg.RefusedWait, runtime.GOMAXPROCS(0)),
		Columns: []string{"way", "/healthz p50", "p99", "max", "probes failed", "/work done/s", "/work 503", "jobs at once, most"},
		Data:    runs,
	}
	for _, run := range runs {
		r.Rows = append(r.Rows, []string{run.Name, msec1(run.Health.P50), msec1(run.Health.P99), msec1(run.Health.Max),
			fmt.Sprintf("%d of %d", run.Health.Failed, run.Health.Probes), fmt.Sprintf("%.0f", run.Work.Throughput),
			fmt.Sprint(run.Work.Failed), fmt.Sprint(run.MostAtOnce)})
	}
	r.Findings = []string{
		fmt.Sprintf("/healthz p99 under CPU load: naive %s, Holdfast %s (%.1f×); idle: %s and %s",
			msec1(naive.Health.P99), msec1(hf.Health.P99), report.Ratio(float64(naive.Health.P99), float64(max(hf.Health.P99, time.Microsecond))),
			msec1(naive.Idle.P99), msec1(hf.Idle.P99)),
		fmt.Sprintf("/healthz max: naive %s, Holdfast %s; probes failed (5 s timeout): %d and %d",
			msec1(naive.Health.Max), msec1(hf.Health.Max), naive.Health.Failed, hf.Health.Failed),
		fmt.Sprintf("work done: naive %.0f/s with up to %d jobs at once; Holdfast %.0f/s with at most %d, %d requests refused with 503 (%.2f× the naive throughput: the lane leaves %d of %d cores to everything else)",
			naive.Work.Throughput, naive.MostAtOnce, hf.Work.Throughput, hf.MostAtOnce, hf.Work.Failed, report.Ratio(hf.Work.Throughput, naive.Work.Throughput),
			runtime.GOMAXPROCS(0)-hf.LaneSize, runtime.GOMAXPROCS(0)),
	}
	r.Chart = &report.Chart{Title: fmt.Sprintf("/healthz latency while %d clients send CPU-heavy requests", cfg.Clients),
		XLabel: "seconds", YLabel: "/healthz latency, ms",
		Markers: []report.Marker{{X: naive.LoadFrom, Label: "load starts"}, {X: naive.LoadTo, Label: "load ends"}}}
	for _, run := range runs {
		var pts []report.Point
		for _, s := range run.Samples {
			if s.OK {
				pts = append(pts, report.Point{X: float64(s.AtMS) / 1000, Y: s.LatencyMS})
			} else {
				pts = append(pts, report.Point{X: float64(s.AtMS) / 1000, Y: 5000}) // a failed probe: its timeout
			}
		}
		r.Chart.Series = append(r.Chart.Series, report.Series{Name: run.Name, Points: pts})
	}
	return r, nil
}
