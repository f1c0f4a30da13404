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
	register(Scenario{Name: "webhooks", Section: "Issue 30: webhooks",
		Description: "events to 100 endpoints while transfers run, 3 of them bad: one shared pool vs Holdfast's per-endpoint isolation (reuses holdfast-lab bench webhooks)",
		Run:         runWebhooksScenario})
}

func runWebhooksScenario(ctx context.Context, env *Env) (*report.Report, error) {
	if env.Webhooks == nil {
		return nil, errors.New("lab webhooks: needs a Holdfast with its event log (holdfast-lab)")
	}
	o := bench.WebhooksOptions{
		Endpoints: pick(env.Scale, 4, 100, 100),
		Rate:      pick(env.Scale, 20.0, 100.0, 100.0),
		Duration:  pick(env.Scale, 2*time.Second, 15*time.Second, 30*time.Second),
		Drain:     pick(env.Scale, 10*time.Second, 20*time.Second, 30*time.Second),
		Warmup:    pick(env.Scale, time.Second, 5*time.Second, 5*time.Second),
		Timeout:   pick(env.Scale, 2*time.Second, 15*time.Second, 15*time.Second),
		Slow:      pick(env.Scale, time.Second, 5*time.Second, 5*time.Second),
		Workers:   16,
	}
	runs, err := env.Webhooks(ctx, o)
	if err != nil {
		return nil, err
	}
	r := &report.Report{
		Claim: "A downstream that is slow, down or failing must get backpressure, bounded concurrency, retries with jitter " +
			"and a dead letter, and must never drag the rest of the system with it. Webhooks are that downstream, one per customer.",
		Measured: fmt.Sprintf("%d endpoints (a tenant each) get every transfer.posted of their tenant while %.0f transfers/s run for %s. "+
			"Then three endpoints go bad: one never answers (timeout %s), one answers 500 half the time, one takes %s. "+
			"Naive: one pool of %d workers posts the events in order. Holdfast: deliveries wait per endpoint in PostgreSQL, "+
			"4 attempts in flight per endpoint, a circuit breaker each.", o.Endpoints, o.Rate, o.Duration, o.Timeout, o.Slow, o.Workers),
		Columns: []string{"", "naive pool", "Holdfast"},
		Data:    map[string]any{"options": o, "runs": runs},
	}
	get := func(name string) bench.WebhookRun {
		for _, run := range runs {
			if run.Name == name {
				return run
			}
		}
		return bench.WebhookRun{}
	}
	nOK, nBad := get("naive pool, all healthy"), get("naive pool, 3 bad endpoints")
	hOK, hBad := get("Holdfast, all healthy"), get("Holdfast, 3 bad endpoints")
	row := func(label string, n, h string) { r.Rows = append(r.Rows, []string{label, n, h}) }
	row("healthy endpoints' delivery p99, all healthy", msec(nOK.Healthy().P99), msec(hOK.Healthy().P99))
	row("… with 3 bad endpoints", msec(nBad.Healthy().P99), msec(hBad.Healthy().P99))
	row("healthy events delivered, with 3 bad", fmt.Sprintf("%d of %d", nBad.Healthy().Delivered, nBad.Healthy().Sent),
		fmt.Sprintf("%d of %d", hBad.Healthy().Delivered, hBad.Healthy().Sent))
	row("transfers' p99 with 3 bad", msec1(nBad.Transfers.P99), msec1(hBad.Transfers.P99))
	r.Findings = []string{
		fmt.Sprintf("With three bad endpoints, the healthy endpoints' delivery p99 went from %s to %s in the shared pool, and from %s to %s with Holdfast.",
			msec(nOK.Healthy().P99), msec(nBad.Healthy().P99), msec(hOK.Healthy().P99), msec(hBad.Healthy().P99)),
		fmt.Sprintf("Transfers' p99: %s without webhooks, %s with Holdfast's delivery and three bad endpoints.",
			msec1(get("transfers alone").Transfers.P99), msec1(hBad.Transfers.P99)),
	}
	r.Chart = &report.Chart{Title: "Healthy endpoints' delivery p99 (ms), all healthy vs 3 bad endpoints", YLabel: "ms",
		Bars: []report.Bar{
			{Label: "all healthy", Group: "naive", Value: ms(nOK.Healthy().P99)},
			{Label: "3 bad", Group: "naive", Value: ms(nBad.Healthy().P99)},
			{Label: "all healthy", Group: "Holdfast", Value: ms(hOK.Healthy().P99)},
			{Label: "3 bad", Group: "Holdfast", Value: ms(hBad.Healthy().P99)},
		}}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
