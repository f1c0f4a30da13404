package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
)

const benchUsage = `Usage: holdfast-lab bench <benchmark> [flags]

Benchmarks (each in one run, against a fresh database, Holdfast beside its baseline):
  transfers   group commit vs one transaction per request (SELECT … FOR UPDATE), and the raw SQL ceiling
  export      streaming CSV export vs psql's \copy (speed) and vs a buffered export (memory), under load
  events      ingest through POST /v1/events vs raw JetStream publish; a 10× burst against slow consumers (lag, drain, loss)
  receipts    a spike of image uploads: capped workers in 2 replicas vs a goroutine and a connection per message
  overload    open loop at 0.5×–5× capacity, overload protection on vs off; /healthz under CPU load
  webhooks    delivery to 100 endpoints, 3 of them bad, while transfers run: Holdfast vs one shared pool
  replica     transfers' p99 beside exports: exports on the primary vs on a streaming replica (--database-read-url)
  soak        mixed traffic at half capacity for 30 minutes with retention limits shrunk: memory, storage, lag over time

Run 'holdfast-lab bench <benchmark> --help' for its flags.
`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, benchUsage)
		return nil
	}
	switch args[0] {
	case "transfers":
		return benchTransfers(ctx, args[1:], stdout, stderr)
	case "export":
		return benchExport(ctx, args[1:], stdout, stderr)
	case "events":
		return benchEvents(ctx, args[1:], stdout, stderr)
	case "receipts":
		return benchReceipts(ctx, args[1:], stdout, stderr)
	case "overload":
		return benchOverload(ctx, args[1:], stdout, stderr)
	case "webhooks":
		return benchWebhooks(ctx, args[1:], stdout, stderr)
	case "replica":
		return benchReplica(ctx, args[1:], stdout, stderr)
	case "soak":
		return benchSoak(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, benchUsage)
		return fmt.Errorf("unknown benchmark %q", args[0])
	}
}

// databaseURLHelp is the help of every benchmark's --database-url.
const databaseURLHelp = "PostgreSQL server to create the benchmark's database on (env DATABASE_URL); empty: a private cluster in a temp dir"

const transfersUsage = `Usage: holdfast-lab bench transfers [flags]

Transfers per second and latency over HTTP for Holdfast (group commit) and a
naive server (one transaction per request, SELECT … FOR UPDATE on both
accounts, writing the same rows: transfer, entries, balances, event, stored
response), on a uniform workload (10,000 accounts) and a hot one (every
transfer credits one of 2 house accounts); the raw SQL ceiling (batched
statements, no HTTP); Holdfast in an open loop at 80% of its peak (or at
each of --open-fractions, which then also prints up to which share of the
peak the open loop's p99 stayed within 50 ms), each measured after a
warm-up at its rate (--open-warmup), whose figures get a row of their own.
With --workload two-phase, Holdfast also makes two-phase payments (a hold,
then its post or void) at each concurrency, beside the single-phase run.
Every transfer carries an Idempotency-Key. Each run's row gives the share of
the machine's CPU busy during it (every process: generator, server,
database). Ends by checking the ledger's invariants.

Flags:
`

// transfersFlags are the flags of bench transfers that are not options
// as given: lists to parse, and profiles of this process.
type transfersFlags struct {
	concurrency, workloads, openFractions, phases string
	cpuprofile, memprofile                        string
}

func benchTransfers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab bench transfers", flag.ContinueOnError)
	o, f := defineTransfers(fs)
	fs.Usage = usageOf(fs, transfersUsage)
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := f.apply(fs, o); err != nil {
		return err
	}
	stopProfiles, err := startProfiles(f.cpuprofile, f.memprofile, stderr)
	if err != nil {
		return err
	}
	defer stopProfiles()
	return bench.Transfers(ctx, *o, stdout, stderr)
}

// defineTransfers defines bench transfers' flags on fs.
func defineTransfers(fs *flag.FlagSet) (*bench.TransfersOptions, *transfersFlags) {
	o, f := &bench.TransfersOptions{}, &transfersFlags{}
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), databaseURLHelp)
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each run")
	fs.IntVar(&o.Accounts, "accounts", 10_000, "customer accounts")
	fs.StringVar(&f.concurrency, "concurrency", "16,64,256,1024", "closed-loop client counts, comma-separated (the peak counts: group commit fills its batches with concurrency)")
	fs.IntVar(&o.Pool, "pool", 16, "database connections for Holdfast and, separately, for the naive server")
	fs.StringVar(&f.workloads, "workloads", "uniform,hot", "workloads to run, comma-separated")
	fs.StringVar(&f.phases, "workload", "single-phase", "single-phase, or two-phase: also two-phase payments (a hold, then its post or void, half each) at each concurrency, beside single-phase in the same run, with their ratio (payments/s; a payment is two requests)")
	fs.IntVar(&o.Committers, "committers", 2, "Holdfast's group-commit transactions in flight at once")
	fs.BoolVar(&o.Admission, "admission", false, "keep Holdfast's admission control on (it sheds past its adaptive limit)")
	fs.Float64Var(&o.OpenRate, "open-rate", 0, "one open loop at this rate in transfers/s instead of --open-fractions (a fixed rate compares builds or settings at equal load)")
	fs.StringVar(&f.openFractions, "open-fractions", "0.8", "open loops at these fractions of Holdfast's peak, comma-separated, each in (0, 2], run in the order given (0.8: the figure the p99 target is set at; several, e.g. 0.5,0.6,0.7,0.8, show up to which load the p99 stays within 50 ms)")
	fs.DurationVar(&o.OpenWarmup, "open-warmup", time.Second, "each open loop first runs this long at its rate, reported on a row of its own and not counted in the loop's figures: they measure the load, not the ramp from the idle pause before each run (0: none)")
	fs.BoolVar(&o.SkipNaive, "skip-naive", false, "measure Holdfast only (for profiling; no ratios)")
	fs.BoolVar(&o.NaiveEvents, "naive-events", true, "the naive server writes each transfer's transfer.posted event in its transaction, as Holdfast does (false: the baseline of sessions 1–8, which wrote none)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (server and load generator) to this file")
	fs.StringVar(&f.memprofile, "memprofile", "", "write a heap profile (allocations of the whole run: go tool pprof -sample_index=alloc_space) to this file at the end")
	return o, f
}

// apply checks the parsed flags and puts the lists into o; its errors name
// the flag.
func (f *transfersFlags) apply(fs *flag.FlagSet, o *bench.TransfersOptions) error {
	for _, s := range strings.Split(f.concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive number", s)
		}
		o.Concurrency = append(o.Concurrency, n)
	}
	for _, s := range strings.Split(f.openFractions, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !(v > 0 && v <= 2) {
			return fmt.Errorf("--open-fractions: %q is not a fraction of the peak in (0, 2]", s)
		}
		o.OpenFractions = append(o.OpenFractions, v)
	}
	switch f.phases {
	case "single-phase":
	case "two-phase":
		o.TwoPhase = true
	default:
		return fmt.Errorf("--workload: %q is neither single-phase nor two-phase", f.phases)
	}
	if o.OpenWarmup < 0 {
		return fmt.Errorf("--open-warmup: %v is negative", o.OpenWarmup)
	}
	if o.OpenRate < 0 {
		return fmt.Errorf("--open-rate: %v is negative", o.OpenRate)
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["open-rate"] && explicit["open-fractions"] {
		return errors.New("--open-rate and --open-fractions: give one (a fixed rate, or fractions of the peak)")
	}
	o.Workloads = strings.Split(f.workloads, ",")
	return nil
}

// startProfiles starts a CPU profile of the process into cpuPath, if
// given; the returned stop ends it and writes the heap profile, whose
// alloc_space sample counts every allocation since the process started,
// into heapPath, if given.
func startProfiles(cpuPath, heapPath string, stderr io.Writer) (stop func(), err error) {
	var cpu *os.File
	if cpuPath != "" {
		if cpu, err = os.Create(cpuPath); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, err
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if heapPath != "" {
			writeHeapProfile(heapPath, stderr)
		}
	}, nil
}

// writeHeapProfile writes the heap profile to path; a failure is reported
// on stderr, as the benchmark's results stand without it.
func writeHeapProfile(path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "memprofile: %v\n", err)
	}
}
