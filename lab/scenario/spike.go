package scenario

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/report"
)

func init() {
	register(Scenario{Name: "spike", Section: "Part 3, problem 3",
		Description: "50 → 50,000 jobs/min: a goroutine and a connection per message vs capped workers with a visibility timeout",
		Run:         runSpikeScenario})
}

func runSpikeScenario(ctx context.Context, env *Env) (*report.Report, error) {
	if env.Spike == nil {
		return nil, errors.New("lab spike: needs holdfast-lab (it runs the receipt pipeline)")
	}
	cfg := bench.SpikeConfig{
		Rate:     pick(env.Scale, 100.0, 50000.0/60, 50000.0/60),
		Duration: pick(env.Scale, 2*time.Second, 10*time.Second, 2*time.Minute),
		MaxDrain: pick(env.Scale, time.Minute, 3*time.Minute, 15*time.Minute),
		Cap:      50,
		DBConns:  4,
		Progress: env.Progress,
	}
	capped, naive, err := env.Spike(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &report.Report{
		Claim: "A spike from 50 to 50,000 messages a minute makes unbounded workers fan out, each opening a database " +
			"connection, until connections are refused, retries re-deliver and a thundering herd hits the database. " +
			"The fix: a visibility timeout and a hard cap on concurrent consumers.",
		Measured: fmt.Sprintf("%.0f receipt uploads a second (%.0f a minute) for %s through the API, small generated JPEGs. "+
			"Holdfast: two worker replicas sharing one durable consumer whose MaxAckPending (%d) caps the jobs in flight, "+
			"each replica with %d database connections of its own, a 60 s visibility timeout extended by heartbeats. Naive: a "+
			"goroutine per message, each opening its own connection, a refused connection NAKed for immediate redelivery. "+
			"Sampled every 100 ms.", cfg.Rate, cfg.Rate*60, cfg.Duration, cfg.Cap, cfg.DBConns),
		Columns: []string{"", "naive (unbounded)", fmt.Sprintf("Holdfast (cap %d)", cfg.Cap)},
		Data:    map[string]any{"config": cfg, "naive": naive, "holdfast": capped},
	}
	row := func(label string, f func(x *bench.SpikeResult) string) {
		r.Rows = append(r.Rows, []string{label, f(naive), f(capped)})
	}
	row("jobs enqueued", func(x *bench.SpikeResult) string { return fmt.Sprint(x.Enqueued) })
	row("max jobs in flight", func(x *bench.SpikeResult) string { return fmt.Sprint(x.MaxInFlight) })
	row("max worker DB connections", func(x *bench.SpikeResult) string { return fmt.Sprint(x.MaxDBConns) })
	row("refused DB connections", func(x *bench.SpikeResult) string { return fmt.Sprint(x.Refused) })
	row("errors / retries", func(x *bench.SpikeResult) string { return fmt.Sprintf("%d / %d", x.Errors, x.Retries) })
	row("ready / failed / pending / lost", func(x *bench.SpikeResult) string {
		return fmt.Sprintf("%d / %d / %d / %d", x.Ready, x.Failed, x.Pending, x.Lost)
	})
	row("drain time after the spike", func(x *bench.SpikeResult) string {
		if !x.Drained {
			return fmt.Sprintf("not within %.0f s", x.Drain.Seconds())
		}
		return fmt.Sprintf("%.1f s", x.Drain.Seconds())
	})
	row("receipts/s while draining", func(x *bench.SpikeResult) string { return fmt.Sprintf("%.0f", x.ReceiptsPerSec) })
	r.Findings = []string{
		fmt.Sprintf("Holdfast never had more than %d jobs in flight (cap %d) nor more than %d worker connections (budget %d); the naive consumer peaked at %d and %d.",
			capped.MaxInFlight, cfg.Cap, capped.MaxDBConns, 2*cfg.DBConns, naive.MaxInFlight, naive.MaxDBConns),
		fmt.Sprintf("Lost receipts: Holdfast %d, naive %d (not ready when the run ended).", capped.Lost+capped.Pending+capped.Failed, naive.Lost+naive.Pending+naive.Failed),
	}
	series := func(name string, x *bench.SpikeResult, y func(bench.SpikeSample) float64) report.Series {
		s := report.Series{Name: name}
		for _, p := range x.Samples {
			s.Points = append(s.Points, report.Point{X: float64(p.AtMS) / 1000, Y: y(p)})
		}
		return s
	}
	r.Chart = &report.Chart{Title: "Receipt spike: jobs in flight and worker DB connections over time", XLabel: "seconds", YLabel: "count",
		Series: []report.Series{
			series("naive: in flight", naive, func(p bench.SpikeSample) float64 { return float64(p.InFlight) }),
			series("naive: DB connections", naive, func(p bench.SpikeSample) float64 { return float64(p.DBConns) }),
			series("Holdfast: in flight", capped, func(p bench.SpikeSample) float64 { return float64(p.InFlight) }),
			series("Holdfast: DB connections", capped, func(p bench.SpikeSample) float64 { return float64(p.DBConns) }),
		},
		Markers: []report.Marker{{X: cfg.Duration.Seconds(), Label: "spike ends"}},
	}
	return r, nil
}
