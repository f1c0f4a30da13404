package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const replicaUsage = `Usage: holdfast-lab bench replica [flags]

Transfers in an open loop on the primary while exports of one long account
run back to back, twice: with Holdfast exporting from the primary, then
with --database-read-url sending the exports to a streaming replica. It
prints the transfers' latency in each run and the ratio of their p99s.
PostgreSQL runs in a private primary cluster with a replica made by
pg_basebackup, both on this machine (so they share its CPU and disk).

Flags:
`

func benchReplica(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench replica", flag.ContinueOnError)
	var o bench.ReplicaOptions
	fs.IntVar(&o.Entries, "entries", 200_000, "entries of the exported account")
	fs.IntVar(&o.Exports, "exports", 4, "exports at once, each reading as fast as it can, one after another")
	fs.Float64Var(&o.Rate, "rate", 200, "transfers per second (open loop)")
	fs.DurationVar(&o.Duration, "duration", 15*time.Second, "each run's measured span")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "each run's warm-up at the rate, not measured")
	fs.Usage = usageOf(fs, replicaUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if o.Entries < 1 || o.Exports < 1 || o.Rate <= 0 || o.Duration <= 0 || o.Warmup < 0 {
		return fmt.Errorf("--entries, --exports, --rate and --duration must be positive, --warmup not negative")
	}
	return bench.Replica(ctx, o, stdout, stderr)
}
