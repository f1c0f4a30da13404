package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/postgres"
)

const benchUsage = `Usage: holdfast bench <benchmark> [flags]

Benchmarks (each in one run, against a fresh database, Holdfast beside its baseline):
  transfers   group commit vs one transaction per request (SELECT … FOR UPDATE), and the raw SQL ceiling
  export      streaming CSV export vs psql's \copy (speed) and vs a buffered export (memory), under load
  events      ingest through POST /v1/events vs raw JetStream publish; a 10× burst against slow consumers (lag, drain, loss)
  receipts    a spike of image uploads: capped workers in 2 replicas vs a goroutine and a connection per message
  overload    open loop at 0.5×–5× capacity, overload protection on vs off; /healthz under CPU load

Run 'holdfast bench <benchmark> --help' for its flags.
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
	default:
		fmt.Fprint(stderr, benchUsage)
		return fmt.Errorf("unknown benchmark %q", args[0])
	}
}

// benchEnv is a fresh database with Holdfast serving it.
type benchEnv struct {
	main    *app.Main
	cluster *pglocal.Cluster
	dir     string
	dbURL   string
}

// startBenchEnv creates a fresh database (on DATABASE_URL's server, or in a
// private cluster with durable settings) and runs Holdfast on it, its
// configuration adjusted by configure.
func startBenchEnv(ctx context.Context, serverURL string, poolSize int, stderr io.Writer, configure ...func(*app.Config)) (*benchEnv, error) {
	env := &benchEnv{}
	var err error
	env.dir, err = os.MkdirTemp("", "holdfast-bench-")
	if err != nil {
		return nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	name := "holdfast_bench_" + hex.EncodeToString(b[:])
	if serverURL == "" {
		env.cluster, err = pglocal.Start(ctx, pglocal.Config{Dir: env.dir + "/postgres"})
		if err != nil {
			env.close()
			return nil, fmt.Errorf("start private PostgreSQL: %w", err)
		}
		if err := env.cluster.CreateDatabase(ctx, name); err != nil {
			env.close()
			return nil, err
		}
		env.dbURL = env.cluster.URL(name)
	} else {
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			env.close()
			return nil, err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
		conn.Close(ctx)
		if err != nil {
			env.close()
			return nil, err
		}
		u, _ := url.Parse(serverURL)
		u.Path = "/" + name
		env.dbURL = u.String()
	}
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = env.dbURL
	m.Config.DataDir = env.dir + "/data"
	m.Config.DBMaxConns = poolSize
	m.Config.RateLimit = 0 // one API key drives every benchmark: measure the server, not its per-tenant quota
	m.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m.Stdout = io.Discard
	for _, f := range configure {
		f(&m.Config)
	}
	env.main = m
	if err := m.Start(ctx); err != nil {
		env.close()
		return nil, err
	}
	return env, nil
}

// tenant creates the tenant a benchmark runs as, with its API key.
func (e *benchEnv) tenant(ctx context.Context) (*holdfast.Tenant, *holdfast.APIKey, error) {
	return postgres.NewTenantService(e.main.DB).CreateTenant(ctx, holdfast.TenantCreate{Name: "bench"}, nil)
}

func (e *benchEnv) close() {
	if e.main != nil {
		e.main.Stop()
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
	os.RemoveAll(e.dir)
}

// machine describes where a benchmark ran.
func machine(ctx context.Context, pool *pgxpool.Pool) string {
	var pg string
	pool.QueryRow(ctx, "SHOW server_version").Scan(&pg)
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s/%s, %s (%s), PostgreSQL %s, load generator, server and database on the same machine",
		host, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), app.GCSettings(), pg)
}

func benchTransfers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast bench transfers", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's database on (env DATABASE_URL); empty: a private cluster in a temp dir")
	duration := fs.Duration("duration", 5*time.Second, "length of each run")
	accounts := fs.Int("accounts", 10_000, "customer accounts")
	conc := fs.String("concurrency", "16,64,256,1024", "closed-loop client counts, comma-separated (the peak counts: group commit fills its batches with concurrency)")
	pool := fs.Int("pool", 16, "database connections for Holdfast and, separately, for the naive server")
	workloads := fs.String("workloads", "uniform,hot", "workloads to run, comma-separated")
	committers := fs.Int("committers", 2, "Holdfast's group-commit transactions in flight at once")
	admission := fs.Bool("admission", false, "keep Holdfast's admission control on (it sheds past its adaptive limit)")
	openRate := fs.Float64("open-rate", 0, "one open loop at this rate in transfers/s instead of --open-fractions (a fixed rate compares builds or settings at equal load)")
	openFractions := fs.String("open-fractions", "0.8", "open loops at these fractions of Holdfast's peak, comma-separated, each in (0, 2], run in the order given (0.8: the figure the p99 target is set at; several, e.g. 0.5,0.6,0.7,0.8, show up to which load the p99 stays within 50 ms)")
	openWarmup := fs.Duration("open-warmup", time.Second, "each open loop first runs this long at its rate, reported on a row of its own and not counted in the loop's figures: they measure the load, not the ramp from the idle pause before each run (0: none)")
	skipNaive := fs.Bool("skip-naive", false, "measure Holdfast only (for profiling; no ratios)")
	naiveEvents := fs.Bool("naive-events", true, "the naive server writes each transfer's transfer.posted event in its transaction, as Holdfast does (false: the baseline of sessions 1–8, which wrote none)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server and load generator) to this file")
	memprofile := fs.String("memprofile", "", "write a heap profile (allocations of the whole run: go tool pprof -sample_index=alloc_space) to this file at the end")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast bench transfers [flags]

Transfers per second and latency over HTTP for Holdfast (group commit) and a
naive server (one transaction per request, SELECT … FOR UPDATE on both
accounts, writing the same rows: transfer, entries, balances, event, stored
response), on a uniform workload (10,000 accounts) and a hot one (every
transfer credits one of 2 house accounts); the raw SQL ceiling (batched
statements, no HTTP); Holdfast in an open loop at 80% of its peak (or at
each of --open-fractions, which then also prints up to which share of the
peak the open loop's p99 stayed within 50 ms), each measured after a
warm-up at its rate (--open-warmup), whose figures get a row of their own.
Every transfer carries an Idempotency-Key. Each run's row gives the share of
the machine's CPU busy during it (every process: generator, server,
database). Ends by checking the ledger's invariants.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	var concurrency []int
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive number", s)
		}
		concurrency = append(concurrency, n)
	}
	var fractions []float64
	for _, s := range strings.Split(*openFractions, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !(f > 0 && f <= 2) {
			return fmt.Errorf("--open-fractions: %q is not a fraction of the peak in (0, 2]", s)
		}
		fractions = append(fractions, f)
	}
	if *openWarmup < 0 {
		return fmt.Errorf("--open-warmup: %v is negative", *openWarmup)
	}
	if *openRate < 0 {
		return fmt.Errorf("--open-rate: %v is negative", *openRate)
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["open-rate"] && explicit["open-fractions"] {
		return errors.New("--open-rate and --open-fractions: give one (a fixed rate, or fractions of the peak)")
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		defer writeHeapProfile(*memprofile, stderr)
	}
	// Admission control off: this measures group commit's capacity; a closed
	// loop of 256 clients past the adaptive limit would measure shedding
	// (that is `holdfast bench overload`'s job).
	env, err := startBenchEnv(ctx, *dbURL, *pool, stderr, func(c *app.Config) { c.Committers, c.Admission = *committers, *admission })
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	tenant, key, err := env.tenant(ctx)
	if err != nil {
		return err
	}

	// The naive server's pool, which the raw SQL ceiling also uses, encodes
	// array parameters as Holdfast's pools do.
	naiveConfig, err := pgxpool.ParseConfig(env.dbURL + poolParam(env.dbURL, *pool))
	if err != nil {
		return err
	}
	naiveConfig.AfterConnect = postgres.RegisterArrays
	naivePool, err := pgxpool.NewWithConfig(ctx, naiveConfig)
	if err != nil {
		return err
	}
	defer naivePool.Close()
	naiveURL, closeNaive, err := serveLoopback(&lab.NaiveLedger{Pool: naivePool, Tenant: tenant.ID, Events: *naiveEvents})
	if err != nil {
		return err
	}
	defer closeNaive()

	fmt.Fprintf(stdout, "holdfast bench transfers: %s\n", machine(ctx, naivePool))
	results, err := lab.BenchTransfers(ctx, lab.TransfersConfig{
		Pool: naivePool, Tenant: tenant.ID, HoldfastURL: m.HTTP.URL(), APIKey: key.Secret, NaiveURL: naiveURL,
		Accounts: *accounts, Concurrency: concurrency, Duration: *duration, OpenRate: *openRate, OpenFractions: fractions, OpenWarmup: *openWarmup, Progress: stderr,
		Workloads: strings.Split(*workloads, ","), SkipNaive: *skipNaive, ServerStats: batchStats(m),
		Drain: m.DrainEvents,
	})
	if err != nil {
		return err
	}
	lab.PrintTransfers(stdout, results)
	return verifyAfterBench(ctx, m, tenant.ID, stdout)
}

// serveLoopback serves h on a free loopback port and returns its URL and
// a function that stops it.
func serveLoopback(h http.Handler) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), srv.Close, nil
}

// verifyAfterBench checks the tenant's ledger once a benchmark is done and
// says so on stdout.
func verifyAfterBench(ctx context.Context, m *app.Main, tenant string, stdout io.Writer) error {
	if err := postgres.VerifyLedger(ctx, m.DB, tenant); err != nil {
		return fmt.Errorf("after the benchmark: %w", err)
	}
	fmt.Fprintln(stdout, "ledger invariants hold: money conserved, no negative balance, balances = entries, each running balance in order")
	return nil
}

// poolParam returns the query suffix that sets pgxpool's size on url.
func poolParam(u string, n int) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return sep + "pool_max_conns=" + strconv.Itoa(n)
}

// batchStats returns a function that describes the group-commit batches
// since its previous call (with their requests' mean wait in the queue), the events the relay moved into the stream in
// how many messages, and the events the consumer groups applied in how many
// transactions (all groups together: a group yields to the requests while
// they pile up, and catches up after).
func batchStats(m *app.Main) func() string {
	var lastCount, lastSize, lastSeconds, lastWaits, lastWaited, lastRelayed, lastApplies, lastApplied float64
	var lastSeq uint64
	return func() string {
		families, err := m.Registry.Gather()
		if err != nil {
			return err.Error()
		}
		var count, size, seconds, waits, waited, relayed, applies, applied float64
		for _, f := range families {
			for _, metric := range f.GetMetric() {
				switch f.GetName() {
				case "holdfast_ledger_batch_size":
					count, size = float64(metric.GetHistogram().GetSampleCount()), metric.GetHistogram().GetSampleSum()
				case "holdfast_ledger_batch_seconds":
					seconds = metric.GetHistogram().GetSampleSum()
				case "holdfast_ledger_queue_wait_seconds":
					waits, waited = float64(metric.GetHistogram().GetSampleCount()), metric.GetHistogram().GetSampleSum()
				case "holdfast_outbox_relayed_total":
					relayed = metric.GetCounter().GetValue()
				case "holdfast_consumer_batch_seconds":
					applies += float64(metric.GetHistogram().GetSampleCount())
				case "holdfast_consumer_applied_total":
					applied += metric.GetCounter().GetValue()
				}
			}
		}
		dc, ds, dt := count-lastCount, size-lastSize, seconds-lastSeconds
		dw, dq := waits-lastWaits, waited-lastWaited
		lastCount, lastSize, lastSeconds, lastWaits, lastWaited = count, size, seconds, waits, waited
		// Every baseline moves on each call, batches or none: a call made
		// to reset the counts before a run must not leave what the relay
		// and consumers did before it (the naive server's events) to be
		// counted in that run's line.
		var events string
		if m.EventStream().Name != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if st, err := m.NATS.JS.Stream(ctx, m.EventStream().Name); err == nil {
				if info, err := st.Info(ctx); err == nil {
					events += fmt.Sprintf("; relayed meanwhile: %.0f events in %d stream messages",
						relayed-lastRelayed, info.State.LastSeq-lastSeq)
					lastRelayed, lastSeq = relayed, info.State.LastSeq
				}
			}
			events += fmt.Sprintf("; consumer groups applied %.0f events in %.0f transactions", applied-lastApplied, applies-lastApplies)
			lastApplied, lastApplies = applied, applies
		}
		if dc == 0 {
			return "no batches"
		}
		// Every batch counted observed the queue wait of each of its requests, so dw ≥ dc > 0.
		return fmt.Sprintf("group commit: %.0f batches, mean %.1f requests, mean %.2f ms each, after %.2f ms in the queue on average",
			dc, ds/dc, 1000*dt/dc, 1000*dq/dw) + events
	}
}

// writeHeapProfile writes the heap profile, whose alloc_space sample counts
// every allocation since the process started, to path.
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
