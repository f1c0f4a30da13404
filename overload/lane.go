package overload

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// ErrLaneFull is what Lane.Do returns when every slot is busy and the wait
// queue is full.
var ErrLaneFull = holdfast.Errorf(holdfast.EOVERLOADED, "the server is busy with CPU-bound work; retry shortly")

// LaneConfig configures a CPU lane.
type LaneConfig struct {
	// Name labels the lane's metrics. Default "cpu".
	Name string
	// Size is how many jobs run at once. Default max(1, GOMAXPROCS-1): one
	// core stays free for the network, the garbage collector, /healthz and
	// the I/O-bound requests. Negative: unbounded (for benchmarks that show
	// what happens without a lane).
	Size int
	// Queue is how many callers may wait for a slot; beyond it Do refuses at
	// once. Default Size: a caller waits for at most about one job.
	Queue int
	// Registerer receives the lane's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c LaneConfig) WithDefaults() LaneConfig {
	if c.Name == "" {
		c.Name = "cpu"
	}
	if c.Size == 0 {
		c.Size = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if c.Queue == 0 && c.Size > 0 {
		c.Queue = c.Size
	}
	return c
}

func (c LaneConfig) validate() error {
	if c.Queue < 0 {
		return errors.New("overload: LaneConfig.Queue must not be negative")
	}
	return nil
}

// Lane runs CPU-bound jobs on a bounded number of goroutines. The zero
// value is not usable; see NewLane.
type Lane struct {
	slots   chan struct{} // nil when unbounded
	queue   int64
	waiting atomic.Int64
	running atomic.Int64
	refused prometheus.Counter
}

// NewLane returns a lane and registers its metrics
// (holdfast_lane_running, holdfast_lane_waiting, holdfast_lane_refused_total,
// labelled by lane). It returns an error for an invalid configuration or a
// metrics registration conflict.
func NewLane(cfg LaneConfig) (*Lane, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Lane{queue: int64(cfg.Queue)}
	if cfg.Size > 0 {
		l.slots = make(chan struct{}, cfg.Size)
	}
	labels := prometheus.Labels{"lane": cfg.Name}
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_lane_refused_total",
		Help: "CPU-lane jobs refused because every slot and queue place was taken.", ConstLabels: labels})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{
			l.refused,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_lane_running", Help: "CPU-lane jobs running.",
				ConstLabels: labels}, func() float64 { return float64(l.running.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_lane_waiting", Help: "CPU-lane jobs waiting for a slot.",
				ConstLabels: labels}, func() float64 { return float64(l.waiting.Load()) }),
		} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Size returns how many jobs run at once; 0 means unbounded.
func (l *Lane) Size() int { return cap(l.slots) }

// Running returns how many jobs are running now.
func (l *Lane) Running() int { return int(l.running.Load()) }

// Waiting returns how many callers wait for a slot now.
func (l *Lane) Waiting() int { return int(l.waiting.Load()) }

// Do runs fn in a slot of the lane, on the calling goroutine, and returns
// its error. It waits for a slot while there is room in the queue and ctx
// allows; it returns ErrLaneFull (EOVERLOADED) at once when the queue is
// full too, and ctx's error if ctx ends first. fn never starts after ctx
// has ended.
func (l *Lane) Do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		default:
			if l.waiting.Add(1) > l.queue {
				l.waiting.Add(-1)
				l.refused.Inc()
				return ErrLaneFull
			}
			select {
			case l.slots <- struct{}{}:
				l.waiting.Add(-1)
			case <-ctx.Done():
				l.waiting.Add(-1)
				return ctx.Err()
			}
			if err := ctx.Err(); err != nil { // both were ready: do not start late work
				<-l.slots
				return err
			}
		}
		defer func() { <-l.slots }()
	}
	l.running.Add(1)
	defer l.running.Add(-1)
	return fn()
}
