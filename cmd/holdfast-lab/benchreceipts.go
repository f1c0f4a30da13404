package main

import (
	"context"
	"flag"
	"io"
	"os"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const receiptsUsage = `Usage: holdfast-lab bench receipts [flags]

A spike of receipt uploads (50,000 a minute for 2 minutes by default, small
generated JPEGs, each on its own transfer) through PUT /v1/transfers/{id}/receipt,
processed by two worker replicas under a global cap (the work queue's
MaxAckPending), each replica with a small pool of its own; sampled every
100 ms: jobs in flight, worker database connections, queue depth. Then the
same spike against the naive consumer: a goroutine per message, each opening
its own database connection, a refused connection NAKed for immediate
redelivery. Reports, side by side: uploads offered, accepted (202), refused
by status and cause, not sent (the generator's 4,096 outstanding), the
accepted uploads' p50 and p99 latency; max in flight, max connections,
refused connections, errors and retries, lost receipts, receipts ready when
the spike ended, drain time, receipts/s and CPU while draining.

Flags:
`

func benchReceipts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench receipts", flag.ContinueOnError)
	var o bench.ReceiptsOptions
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's databases on (env DATABASE_URL); empty: a private cluster in a temp dir")
	fs.Float64Var(&o.Rate, "rate", 50000.0/60, "uploads per second during the spike (50,000 a minute)")
	fs.DurationVar(&o.Duration, "duration", 2*time.Minute, "length of the spike")
	fs.IntVar(&o.Cap, "cap", 50, "receipt jobs in flight across the two replicas")
	fs.IntVar(&o.DBConns, "db-conns", 4, "database connections of each replica's workers")
	fs.DurationVar(&o.MaxDrain, "max-drain", 15*time.Minute, "give up waiting for Holdfast's queue after this")
	fs.DurationVar(&o.NaiveMaxDrain, "naive-max-drain", 2*time.Minute, "give up waiting for the naive consumer after this")
	fs.IntVar(&o.Width, "width", 160, "width of the generated images")
	fs.IntVar(&o.Height, "height", 120, "height of the generated images")
	fs.BoolVar(&o.SkipNaive, "skip-naive", false, "run Holdfast only")
	var cpuprofile, memprofile string
	fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (server, workers and load generator) to this file")
	fs.StringVar(&memprofile, "memprofile", "", "write a heap profile (allocations of the whole run: go tool pprof -sample_index=alloc_space) to this file at the end")
	fs.Usage = usageOf(fs, receiptsUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	stopProfiles, err := startProfiles(cpuprofile, memprofile, stderr)
	if err != nil {
		return err
	}
	defer stopProfiles()
	return bench.Receipts(ctx, o, stdout, stderr)
}
