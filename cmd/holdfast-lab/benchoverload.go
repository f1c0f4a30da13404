package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const overloadUsage = `Usage: holdfast-lab bench overload [flags]

Overload protection on vs off. First short closed loops measure the
capacity of POST /v1/transfers (the peak over --capacity-clients, or what an
open loop at 2× that peak gets done, if more); then an open loop (constant arrival rate,
latency from each request's intended send time) offers 0.5×, 1×, 2× and 5×
that capacity to Holdfast with protection on (admission control, a bounded
CPU lane, a database acquire timeout) and off (none of them), each on a
fresh database (both servers run side by side and the runs alternate), while
/healthz is probed every 50 ms. Reported: goodput
(201 within 1 s, per second), p50/p99 of successes, the share shed (503 or
429) and its p99, /healthz p99. Before the loads, two short closed loops
measure what a transfer and the server's cheapest refusal (a request whose
Request-Timeout has expired) cost the whole machine in CPU, and the report
says how much of the machine serving 0.9× capacity while refusing the rest
of the highest load would take. Then CPU-bound jobs (SHA-256 rounds, the
stand-in for receipt processing until it exists) are pushed through the
server's CPU lane as fast as possible, bounded vs unbounded, while
/healthz is probed over HTTP. The load generator shares the machine.

Flags:
`

func benchOverload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench overload", flag.ContinueOnError)
	o, capClients, loads := defineOverload(fs)
	fs.Usage = usageOf(fs, overloadUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	for _, s := range strings.Split(*loads, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("--loads: %q is not a positive number", s)
		}
		o.Loads = append(o.Loads, f)
	}
	for _, c := range strings.Split(*capClients, ",") {
		clients, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || clients < 1 {
			return fmt.Errorf("--capacity-clients: %q is not a positive number", c)
		}
		o.CapacityClients = append(o.CapacityClients, clients)
	}
	return bench.Overload(ctx, *o, stdout, stderr)
}

// defineOverload defines bench overload's flags on fs; the two lists are
// parsed after.
func defineOverload(fs *flag.FlagSet) (o *bench.OverloadOptions, capacityClients, loads *string) {
	o = &bench.OverloadOptions{}
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's databases on (env DATABASE_URL); empty: a private cluster in a temp dir")
	fs.DurationVar(&o.Duration, "duration", 8*time.Second, "length of each open-loop run")
	fs.DurationVar(&o.CapacityDuration, "capacity-duration", 4*time.Second, "length of the closed loop that measures capacity")
	capacityClients = fs.String("capacity-clients", "64,256", "closed-loop client counts that measure capacity (the peak counts), comma-separated")
	loads = fs.String("loads", "0.5,1,2,5", "open-loop rates as multiples of the measured capacity, comma-separated")
	fs.IntVar(&o.Accounts, "accounts", 10_000, "funded accounts the transfers move money between")
	fs.IntVar(&o.Pool, "pool", 16, "database connections")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", 4096, "the load generator's outstanding requests; past it a request is counted as not sent")
	fs.IntVar(&o.Conns, "conns", 256, "the load generator's connections (as a load balancer would hold); requests beyond them wait in the client, on the clock")
	fs.DurationVar(&o.GoodWithin, "good-within", time.Second, "a success counts towards goodput if it came within this of its intended send time; sent as Request-Timeout")
	fs.IntVar(&o.AdmissionMinLimit, "admission-min-limit", 0, "protection on: the server's --admission-min-limit; 0 keeps serve's default")
	fs.DurationVar(&o.AdmissionQueueWait, "admission-queue-wait", 0, "protection on: the server's --admission-queue-wait; 0 keeps serve's default")
	fs.Float64Var(&o.AdmissionTolerance, "admission-tolerance", 0, "protection on: the server's --admission-tolerance; 0 keeps serve's default")
	fs.BoolVar(&o.Console, "console", false, "give both servers an admin token and watch their consoles throughout, as an operator's open browser would")
	fs.DurationVar(&o.LedgerMaxWait, "ledger-max-wait", 0, "protection on: the server's --ledger-max-wait; 0 keeps serve's default")
	fs.DurationVar(&o.CostDuration, "cost-duration", 3*time.Second, "length of the closed loops that measure what a transfer and a refusal cost the machine; 0 skips them")
	fs.DurationVar(&o.CPUDuration, "cpu-duration", 5*time.Second, "length of each CPU-lane run; 0 skips them")
	fs.IntVar(&o.CPUWorkers, "cpu-workers", 32, "goroutines submitting CPU-bound jobs to the lane")
	fs.IntVar(&o.CPUIterations, "cpu-iterations", 100_000, "SHA-256 rounds per CPU-bound job (100,000 is about 25 ms)")
	return o, capacityClients, loads
}
