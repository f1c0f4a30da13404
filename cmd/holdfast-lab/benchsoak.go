package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const soakUsage = `Usage: holdfast-lab bench soak [flags]

Months compressed into minutes: runs the holdfast binary (serve, a process of
its own, so its memory is its own) with the event stream's age, the duplicate
window and the Idempotency-Key retention shrunk to a retention period of a
sixth of the run (flags the binary does not have yet are listed, not passed),
and drives a constant open-loop mix at it: keyed transfers, keyed client
events (a share of both sent twice, as a client that lost the answer does),
receipt uploads (small PNGs) and small CSV exports. The transfer rate is
--rate, or --capacity-fraction of the capacity a short closed-loop probe
measures first. Every --interval it samples, prints and keeps: throughput and
p99 by kind, the server's RSS and Go heap, the PostgreSQL database and its
hot tables, the NATS store, the outbox depth, each consumer group's lag.
At the end, once the backlog drained: the ledger's invariants, every committed
change audited exactly once (and the chain verified), every acknowledged client
event counted once by analytics and the audit, every receipt processed; then
the targets, PASS or MISS: RSS and heap at the end within 10% of their value
after the first window, the NATS store and the time-bounded tables flat once
retention turned over, transfer throughput and p99 in the last window within
10% of the first (windows of 5 minutes; a fifth of the run when shorter than
10 minutes). Writes samples.csv and SVG charts to --out. Exits 1 if a check
fails; a missed target is a finding, not an error.

Flags:
`

func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench soak", flag.ContinueOnError)
	var o bench.SoakOptions
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), databaseURLHelp)
	fs.StringVar(&o.Holdfast, "holdfast", "", "the holdfast binary to soak; empty: the holdfast beside this program (make build puts both in bin/)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Minute, "length of the traffic (at least 10m for the 5-minute windows)")
	fs.Float64Var(&o.Rate, "rate", 0, "keyed transfers per second; 0: --capacity-fraction of the capacity measured first")
	fs.Float64Var(&o.CapacityFraction, "capacity-fraction", 0.5, "share of the measured transfer capacity to run at, in (0, 1]")
	fs.DurationVar(&o.CapacityProbe, "capacity-probe", 10*time.Second, "length of the closed-loop capacity probe (64 clients)")
	fs.Float64Var(&o.EventShare, "event-share", 0.5, "client-event requests (one event each) per transfer")
	fs.Float64Var(&o.ReceiptRate, "receipt-rate", 0, "receipt uploads per second; 0: the transfer rate / 50, at most 2")
	fs.DurationVar(&o.ExportEvery, "export-every", 10*time.Second, "pause between CSV exports (an account's last two minutes)")
	fs.Float64Var(&o.Retry, "retry", 0.05, "share of keyed transfers and client events sent a second time with the same Idempotency-Key")
	fs.DurationVar(&o.Retention, "retention", 0, "the retention period the shrunk limits derive from; 0: a sixth of --duration, at least 10s")
	fs.DurationVar(&o.Interval, "interval", 10*time.Second, "pause between samples")
	fs.IntVar(&o.Accounts, "accounts", 1000, "customer accounts the transfers move money between")
	fs.DurationVar(&o.MaxDrain, "max-drain", 3*time.Minute, "after the traffic, wait at most this for the backlog before checking")
	fs.StringVar(&o.Out, "out", "soak-results", "directory for samples.csv and the charts")
	fs.Usage = usageOf(fs, soakUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if o.Holdfast == "" {
		bin, err := besideThisProgram("holdfast")
		if err != nil {
			return fmt.Errorf("--holdfast: %w (make build puts it in bin/)", err)
		}
		o.Holdfast = bin
	}
	res, err := bench.Soak(ctx, o, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	bench.PrintSoak(stdout, res)
	if o.Out != "" {
		if err := bench.WriteSoak(o.Out, res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nsamples and charts (throughput, p99, memory, storage, backlog) in %s\n", o.Out)
	}
	if failed := res.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, c := range failed {
			names[i] = c.Name
		}
		return errors.New("soak: checks failed: " + strings.Join(names, "; "))
	}
	return nil
}

// besideThisProgram returns the path of the named program in this one's
// directory, if it is there.
func besideThisProgram(name string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s beside %s", name, self)
	}
	return p, nil
}
