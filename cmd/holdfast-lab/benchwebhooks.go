package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const webhooksUsage = `Usage: holdfast-lab bench webhooks [flags]

Webhook delivery while transfers run at a steady rate (an open loop over
--endpoints tenants, each with one endpoint subscribed to transfer.posted,
all on one receiver on loopback). Five runs on one server: transfers alone
(no endpoint enabled); Holdfast's delivery with every endpoint healthy, then
with three bad ones (one never answers, one answers 500 half the time, one
takes --slow); the naive way, one shared pool of --workers that posts every
event in turn (no per-endpoint cap, no breaker), the same two ways. After
each run's load it waits up to --drain for the healthy endpoints to get
every event. Reported per endpoint class: events, delivered, duplicates
(2xx answers beyond the first), delivery latency p50/p99 (from the
transfer's commit to the endpoint's 2xx); per run the transfers' p50/p99.

Targets (issue 30): the healthy endpoints' p99 with the bad ones ≤ 1.5× their
p99 when all are healthy, and ≤ 1 s; the transfers' p99 unchanged beyond
noise.

Flags:
`

func benchWebhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench webhooks", flag.ContinueOnError)
	var o bench.WebhooksOptions
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), databaseURLHelp)
	fs.IntVar(&o.Endpoints, "endpoints", 100, "endpoints, one per tenant (at least 4: the first three are the bad ones)")
	fs.Float64Var(&o.Rate, "rate", 100, "transfers per second, spread over the tenants in turn")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "length of each run's load")
	fs.DurationVar(&o.Drain, "drain", 30*time.Second, "after each run's load, the longest wait for the healthy endpoints to get every event")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "transfers at the rate before the first run, not measured")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Second, "an attempt's timeout (the server's --webhook-timeout, and the naive pool's)")
	fs.DurationVar(&o.Slow, "slow", 5*time.Second, "how long the slow endpoint takes to answer")
	fs.IntVar(&o.Workers, "workers", 16, "the naive pool's workers")
	fs.Usage = usageOf(fs, webhooksUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if o.Endpoints < 4 {
		return errors.New("--endpoints must be at least 4")
	}
	return bench.Webhooks(ctx, o, stdout, stderr)
}
