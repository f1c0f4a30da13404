package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/events"
)

// EventsOptions are the settings of `holdfast-lab bench events`; its flags
// give their defaults.
type EventsOptions struct {
	DatabaseURL   string        // server to create the database on; empty: a private cluster
	IngestFor     time.Duration // length of each ingest run
	Batch         int           // events per request in the ingest runs
	Clients       int           // concurrent clients (and raw publishers) in the ingest runs
	ConsumerDelay time.Duration // per-event delay of the consumer groups (a slow downstream)
	Warmup        time.Duration // normal-rate production before the burst
	Burst         time.Duration // the burst, at 10× the consumers' rate
	MaxDrain      time.Duration // give up waiting for the lag to drain after this
	SkipBurst     bool          // run the ingest comparison only
}

// Events runs the events benchmark on a fresh database: (a) ingest through
// POST /v1/events beside raw JetStream publishing, (b) a burst against
// consumers slowed by o.ConsumerDelay. It prints the figures to stdout and
// progress to stderr.
func Events(ctx context.Context, o EventsOptions, stdout, stderr io.Writer) error {
	env, err := startBenchEnv(ctx, o.DatabaseURL, 16, stderr, func(c *app.Config) { c.Events.Delay = o.ConsumerDelay })
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	_, k, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "holdfast-lab bench events — %s\n", machine(ctx, m.DB.Pool))
	fmt.Fprintf(stdout, "NATS: embedded, file storage; consumer groups: analytics, audit (batch %d, 1 worker each)\n\n", m.Config.Events.Batch)

	target := AdminTarget(m.HTTP.URL(), k.Secret, m.Consumers(), m.DB.Pool)
	if err := ingestBeside(ctx, m, target, o, stdout, stderr); err != nil {
		return err
	}
	if o.SkipBurst {
		return nil
	}

	// (b) Burst, as a fresh tenant whose events alone are counted.
	t2, k2, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	target.Key = k2.Secret
	fmt.Fprintf(stderr, "burst (consumer delay %s per event):\n", o.ConsumerDelay)
	b, err := RunBurst(ctx, target, BurstConfig{Tenant: t2.ID, Warmup: o.Warmup, Burst: o.Burst, MaxDrain: o.MaxDrain, Progress: stderr})
	if err != nil {
		return err
	}
	printBurst(stdout, b)
	return nil
}

// ingestBeside runs part (a), ingest through the API beside a raw stream
// with the events stream's settings, and then drops the events of both.
func ingestBeside(ctx context.Context, m *app.Main, target *EventTarget, o EventsOptions, stdout, stderr io.Writer) error {
	raw := m.EventStream()
	raw.Name = "bench_raw"
	if _, err := events.EnsureStream(ctx, m.NATS.JS, raw); err != nil {
		return err
	}
	rawJS, err := njs.New(m.NATS.NC, njs.WithPublishAsyncMaxPending(2*m.Config.Events.Window))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ingest: %s through the API, then %s raw\n", o.IngestFor, o.IngestFor)
	ing, err := runIngest(ctx, target, rawJS, raw.Name, o.Clients, o.Batch, o.IngestFor)
	if err != nil {
		return err
	}
	printIngest(stdout, ing)
	fmt.Fprintln(stdout)
	// The ingest runs' events are not the burst's: drop them from both streams.
	if s, err := m.NATS.JS.Stream(ctx, m.EventStream().Name); err == nil {
		if err := s.Purge(ctx); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
	m.NATS.JS.DeleteStream(ctx, raw.Name)
	return nil
}
