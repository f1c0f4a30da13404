package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const exportUsage = `Usage: holdfast-lab bench export [flags]

One account with a long history (seeded by COPY), exported as CSV:
 (a) a fast client: Holdfast's GET …/transactions.csv against psql's \copy of
     the same query to CSV (rows/s, MB/s, ratio);
 (b) a slow client (1 MiB/s for 20 s, then as fast as possible): peak RSS
     growth of this process for Holdfast's streaming export against a naive
     export that builds the whole file in memory first;
 (c) 16 slow exports (cut off after 20 s) alone, transfers in a closed loop
     alone, then both at once: the peak growth of this process's RSS, Go heap
     and live heap in each, so the exports' own share shows apart from the
     transfer load's, and the transfers' p99 with and without the exports.
Holdfast, the naive server and the clients run in this process; PostgreSQL
and psql beside it.

Flags:
`

func benchExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench export", flag.ContinueOnError)
	var o bench.ExportOptions
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), databaseURLHelp)
	fs.IntVar(&o.Entries, "entries", 2_000_000, "entries of the exported account")
	slowSeconds := fs.Int("slow-seconds", 20, "how many seconds a slow client reads slowly; also the length of each transfer run")
	fs.Int64Var(&o.SlowRate, "slow-rate", 1<<20, "bytes per second a slow client reads")
	fs.IntVar(&o.Concurrent, "concurrent", 16, "slow exports at once while transfers run")
	fs.IntVar(&o.Clients, "clients", 16, "closed-loop transfer clients")
	fs.StringVar(&o.Parts, "parts", "abc", "the parts to run, some of a, b and c (the psql client is needed for (a) only)")
	fs.Usage = usageOf(fs, exportUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	o.SlowFor = time.Duration(*slowSeconds) * time.Second
	if o.Entries < 1 || o.SlowFor <= 0 || o.SlowRate < 1 || o.Concurrent < 1 || o.Clients < 1 {
		return fmt.Errorf("--entries, --slow-seconds, --slow-rate, --concurrent and --clients must be positive")
	}
	if o.Parts == "" || strings.Trim(o.Parts, "abc") != "" {
		return fmt.Errorf("--parts %q: want some of a, b and c", o.Parts)
	}
	return bench.Export(ctx, o, stdout, stderr)
}
