package main

import (
	"context"
	"flag"
	"io"
	"os"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const eventsUsage = `Usage: holdfast-lab bench events [flags]

(a) Ingest: client events stored per second through POST /v1/events
(batches of 500, 8 clients) beside the limit, raw JetStream async publish of
the same envelopes in-process (same storage, same batches awaited).
(b) Burst: consumer groups slowed by --consumer-delay per event; events at a
normal rate, then at 10× the consumers' measured rate for --burst, then at
the normal rate until the lag drains; lag sampled every 250 ms; producer p99
before and during the burst, and at the burst's rate with the consumers
paused (a control: what the request rate alone costs); and the events
produced, audited and counted by analytics, which must be equal.

(c) --flood: one tenant floods POST /v1/events at --flood-multiple × its
quota (--flood-quota events/s) while another sends transfers and events at
a steady rate; a phase without the flood, then one with it, --flood-phase
each; prints the other tenant's p99s and the consumer groups' largest lag in
each, and their ratio (target: p99 within 1.5×). About 70 s with the
defaults; it runs instead of (a) and (b).

Targets (issue 5): ingest ≥ 0.6× raw and ≥ 30,000 events/s; producer p99
during the burst within 2× of before; lost = 0. With the defaults the burst
run takes about 6 minutes: the backlog of a 30 s burst at 10× is 270 s of
consumer work.

Flags:
`

func benchEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench events", flag.ContinueOnError)
	var o bench.EventsOptions
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), databaseURLHelp)
	fs.DurationVar(&o.IngestFor, "ingest", 10*time.Second, "length of each ingest run")
	fs.IntVar(&o.Batch, "batch", 500, "events per request in the ingest runs")
	fs.IntVar(&o.Clients, "clients", 8, "concurrent clients (and raw publishers) in the ingest runs")
	fs.DurationVar(&o.ConsumerDelay, "consumer-delay", 2*time.Millisecond, "per-event delay of the consumer groups in the burst run (a slow downstream)")
	fs.DurationVar(&o.Warmup, "warmup", 20*time.Second, "normal-rate production before the burst")
	fs.DurationVar(&o.Burst, "burst", 30*time.Second, "length of the burst at 10× the consumers' rate")
	fs.DurationVar(&o.MaxDrain, "max-drain", 10*time.Minute, "give up waiting for the lag to drain after this")
	fs.BoolVar(&o.SkipBurst, "skip-burst", false, "run the ingest comparison only")
	flood := fs.Bool("flood", false, "run the flood comparison (c) instead")
	fo := bench.FloodOptions{EventBatch: 50}
	fs.DurationVar(&fo.Phase, "flood-phase", 30*time.Second, "length of each flood phase")
	fs.Int64Var(&fo.Quota, "flood-quota", 2000, "client events per second per tenant in the flood run")
	fs.Float64Var(&fo.FloodMultiple, "flood-multiple", 10, "the flooding tenant's rate, in multiples of its quota")
	fs.Float64Var(&fo.TransferRate, "flood-transfers", 200, "the other tenant's transfers per second")
	fs.Float64Var(&fo.EventRate, "flood-events", 10, "the other tenant's POST /v1/events per second, 50 events each")
	fs.Usage = usageOf(fs, eventsUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *flood {
		fo.DatabaseURL = o.DatabaseURL
		return bench.Flood(ctx, fo, stdout, stderr)
	}
	return bench.Events(ctx, o, stdout, stderr)
}
