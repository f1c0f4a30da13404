package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/lab"
)

func benchEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast bench events", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's database on (env DATABASE_URL); empty: a private cluster in a temp dir")
	ingestFor := fs.Duration("ingest", 10*time.Second, "length of each ingest run")
	batch := fs.Int("batch", 500, "events per request in the ingest runs")
	clients := fs.Int("clients", 8, "concurrent clients (and raw publishers) in the ingest runs")
	delay := fs.Duration("consumer-delay", 2*time.Millisecond, "per-event delay of the consumer groups in the burst run (a slow downstream)")
	warmup := fs.Duration("warmup", 20*time.Second, "normal-rate production before the burst")
	burst := fs.Duration("burst", 30*time.Second, "length of the burst at 10× the consumers' rate")
	maxDrain := fs.Duration("max-drain", 10*time.Minute, "give up waiting for the lag to drain after this")
	skipBurst := fs.Bool("skip-burst", false, "run the ingest comparison only")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast bench events [flags]

(a) Ingest: client events stored per second through POST /v1/events
(batches of 500, 8 clients) beside the limit, raw JetStream async publish of
the same envelopes in-process (same storage, same batches awaited).
(b) Burst: consumer groups slowed by --consumer-delay per event; events at a
normal rate, then at 10× the consumers' measured rate for --burst, then at
the normal rate until the lag drains; lag sampled every 250 ms; producer p99
before and during the burst, and at the burst's rate with the consumers
paused (a control: what the request rate alone costs); and the events
produced, audited and counted by analytics, which must be equal.

Targets (issue 5): ingest ≥ 0.6× raw and ≥ 30,000 events/s; producer p99
during the burst within 2× of before; lost = 0. With the defaults the burst
run takes about 6 minutes: the backlog of a 30 s burst at 10× is 270 s of
consumer work.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}

	env, err := startBenchEnv(ctx, *dbURL, 16, stderr, func(c *app.Config) { c.Events.Delay = *delay })
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	_, k, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "holdfast bench events — %s\n", machine(ctx, m.DB.Pool))
	fmt.Fprintf(stdout, "NATS: embedded, file storage; consumer groups: analytics, audit (batch %d, 1 worker each)\n\n", m.Config.Events.Batch)

	target := lab.AdminTarget(m.HTTP.URL(), k.Secret, m.Consumers(), m.DB.Pool)

	// (a) Ingest, against a raw stream with the events stream's settings.
	raw := m.EventStream()
	raw.Name = "bench_raw"
	if _, err := events.EnsureStream(ctx, m.NATS.JS, raw); err != nil {
		return err
	}
	rawJS, err := njs.New(m.NATS.NC, njs.WithPublishAsyncMaxPending(2*m.Config.Events.Window))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ingest: %s through the API, then %s raw\n", *ingestFor, *ingestFor)
	ing, err := lab.BenchIngest(ctx, target, rawJS, raw.Name, *clients, *batch, *ingestFor)
	if err != nil {
		return err
	}
	lab.PrintIngest(stdout, ing)
	fmt.Fprintln(stdout)
	// The ingest runs' events are not the burst's: drop them from both streams.
	if s, err := m.NATS.JS.Stream(ctx, m.EventStream().Name); err == nil {
		if err := s.Purge(ctx); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
	m.NATS.JS.DeleteStream(ctx, raw.Name)
	if *skipBurst {
		return nil
	}

	// (b) Burst, as a fresh tenant whose events alone are counted.
	t2, k2, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	target.Key = k2.Secret
	fmt.Fprintf(stderr, "burst (consumer delay %s per event):\n", *delay)
	b, err := lab.BenchBurst(ctx, target, lab.BurstConfig{Tenant: t2.ID, Warmup: *warmup, Burst: *burst, MaxDrain: *maxDrain, Progress: stderr})
	if err != nil {
		return err
	}
	lab.PrintBurst(stdout, b)
	return nil
}
