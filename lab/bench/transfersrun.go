package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/lab/load"
)

// transfersConfig configures the transfer benchmark.
type transfersConfig struct {
	Pool        *pgxpool.Pool // the database both servers use
	Tenant      string        // the tenant whose accounts are used
	HoldfastURL string        // Holdfast's API
	APIKey      string        // the tenant's API key for Holdfast
	NaiveURL    string        // a naive.Ledger for the same tenant
	Accounts    int           // customer accounts of the uniform workload; default 10,000
	Concurrency []int         // closed-loop concurrencies; default 16, 64, 256
	Duration    time.Duration // each run; default 5s
	// OpenFractions are the open loops' rates as fractions of the peak, one
	// open loop each, in this order; default 0.8 alone (the figure issue 3's
	// p99 target is set at). Several show where the p99 leaves its target.
	OpenFractions []float64
	OpenRate      float64 // if positive, one open loop at this rate (transfers/s) instead
	// OpenWarmup is how long each open loop runs at its rate before the
	// Duration it is measured over (0: none). Its calls are reported apart
	// (transfersWorkload.OpenWarm): they measure the ramp from idle after
	// the run before, not the load.
	OpenWarmup time.Duration
	Workloads  []string // "uniform", "hot"; default both
	SkipNaive  bool     // measure Holdfast only (for profiling)
	// TwoPhase also runs Holdfast with two-phase payments (a hold, then its
	// post or void) at each concurrency, right after the single-phase run.
	TwoPhase bool
	// ServerStats, if set, is called after each Holdfast run and its text
	// printed with the progress (e.g. the group-commit batch sizes).
	ServerStats func() string
	// Drain, if set, waits until the server's background work (the event
	// log's relay and consumers) has caught up, before every run: no run
	// pays for the previous one's events.
	Drain    func(context.Context) error
	Progress io.Writer // progress lines; nil for none
}

func (c transfersConfig) withDefaults() transfersConfig {
	if c.Accounts == 0 {
		c.Accounts = 10_000
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{16, 64, 256}
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if len(c.OpenFractions) == 0 {
		c.OpenFractions = []float64{targetFraction}
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// workload picks the accounts of each transfer.
type workload struct {
	name string
	pick func(rng *rand.Rand) (debit, credit string)
}

// runTransfers runs the transfer benchmark: for a uniform and a hot
// workload, Holdfast and the naive per-request transaction over HTTP at each
// concurrency (closed loop), the raw SQL ceiling, and Holdfast in an open
// loop at a fraction of its peak. Every HTTP transfer carries a unique
// Idempotency-Key. It returns an error only if the accounts cannot be
// seeded; a run that fails counts its failures in its Result.
func runTransfers(ctx context.Context, cfg transfersConfig) ([]transfersWorkload, error) {
	cfg = cfg.withDefaults()
	workloads, err := seedWorkloads(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &transfersRun{cfg: cfg, posters: map[string]*load.Poster{}, maxConc: openLoopClients}
	// The generator's connections and the open loop's outstanding requests
	// are those of the defaults' 1,024 clients at least, so that a shorter
	// --concurrency list does not cap the open loop (with 64 clients, an open
	// loop at 10,000/s found its 256 slots taken and sent 6,245/s).
	for _, c := range cfg.Concurrency {
		r.maxConc = max(r.maxConc, c)
	}
	defer r.close()
	var out []transfersWorkload
	for _, w := range workloads {
		if len(cfg.Workloads) > 0 && !slices.Contains(cfg.Workloads, w.name) {
			continue
		}
		res := transfersWorkload{Name: w.name}
		r.closedLoops(ctx, w, &res)
		r.settle(ctx)
		fmt.Fprintf(cfg.Progress, "%s: raw SQL ceiling, %v\n", w.name, cfg.Duration)
		res.Ceiling = load.WithCPU(0, func() load.Result { return rawCeiling(ctx, cfg, w) })
		r.openLoops(ctx, w, &res)
		out = append(out, res)
	}
	return out, nil
}

// seedWorkloads seeds the customer and house accounts and returns the
// workloads over them: uniform (customer to customer) and hot (every
// transfer credits one of the 2 house accounts).
func seedWorkloads(ctx context.Context, cfg transfersConfig) ([]workload, error) {
	fmt.Fprintf(cfg.Progress, "seeding %d funded accounts and 2 house accounts\n", cfg.Accounts)
	customers, err := SeedAccounts(ctx, cfg.Pool, cfg.Tenant, "USD", cfg.Accounts, 1_000_000_000, false)
	if err != nil {
		return nil, err
	}
	house, err := SeedAccounts(ctx, cfg.Pool, cfg.Tenant, "USD", 2, 0, false)
	if err != nil {
		return nil, err
	}
	return []workload{
		{"uniform", func(rng *rand.Rand) (string, string) {
			d := rng.IntN(len(customers))
			c := (d + 1 + rng.IntN(len(customers)-1)) % len(customers)
			return customers[d], customers[c]
		}},
		{"hot", func(rng *rand.Rand) (string, string) {
			return customers[rng.IntN(len(customers))], house[rng.IntN(2)]
		}},
	}, nil
}

// transfersRun is one runTransfers: its load generators, one per server.
type transfersRun struct {
	cfg     transfersConfig
	posters map[string]*load.Poster
	maxConc int // the most clients of any loop
	runID   atomic.Int64
}

func (r *transfersRun) close() {
	for _, p := range r.posters {
		p.Close()
	}
}

// settle runs before each run: the server's background work catches up,
// then a vacuum and a checkpoint, so that no run pays for the previous
// one's events, dead rows or dirty pages (autovacuum and checkpoints
// otherwise land in whichever run happens to be going).
func (r *transfersRun) settle(ctx context.Context) {
	if r.cfg.Drain != nil {
		if err := r.cfg.Drain(ctx); err != nil {
			fmt.Fprintf(r.cfg.Progress, "drain: %v\n", err)
		}
	}
	if err := Settle(ctx, r.cfg.Pool); err != nil {
		fmt.Fprintf(r.cfg.Progress, "settle: %v\n", err)
	}
}

// resetStats calls ServerStats before a Holdfast run, whose line then
// covers that run alone, not the naive server's events the relay moved
// before it.
func (r *transfersRun) resetStats() {
	if r.cfg.ServerStats != nil {
		r.cfg.ServerStats()
	}
}

// printStats prints what the server did in the run just ended.
func (r *transfersRun) printStats() {
	if r.cfg.ServerStats != nil {
		fmt.Fprintf(r.cfg.Progress, "  %s\n", r.cfg.ServerStats())
	}
}

// call returns a Call that posts w's transfers to base, under
// Idempotency-Keys of a run of its own.
func (r *transfersRun) call(base string, w workload) load.Call {
	p := r.posters[base]
	if p == nil {
		var err error
		if p, err = load.NewPoster(base, r.maxConc+16, 30*time.Second); err != nil {
			return func(context.Context, int, int64) (bool, error) { return false, err }
		}
		r.posters[base] = p
	}
	return load.TransferCall(p, r.cfg.APIKey, r.runID.Add(1), w.pick)
}

// twoPhaseCall returns a Call that makes w's payments in two phases on base.
func (r *transfersRun) twoPhaseCall(base string, w workload) load.Call {
	r.call(base, w) // makes the poster
	return load.TwoPhaseCall(r.posters[base], r.cfg.APIKey, r.runID.Add(1), w.pick)
}

// closedLoops runs Holdfast (single-phase, then with TwoPhase two-phase),
// then the naive server, at each concurrency.
func (r *transfersRun) closedLoops(ctx context.Context, w workload, res *transfersWorkload) {
	cfg := r.cfg
	for _, c := range cfg.Concurrency {
		r.settle(ctx)
		r.resetStats()
		fmt.Fprintf(cfg.Progress, "%s: holdfast, %d clients, %v\n", w.name, c, cfg.Duration)
		res.Holdfast = append(res.Holdfast, load.WithCPU(0, func() load.Result {
			return load.ClosedLoop(ctx, fmt.Sprintf("holdfast c=%d", c), c, cfg.Duration, r.call(cfg.HoldfastURL, w))
		}))
		r.printStats()
		if cfg.TwoPhase {
			r.settle(ctx)
			r.resetStats()
			fmt.Fprintf(cfg.Progress, "%s: holdfast two-phase, %d clients, %v\n", w.name, c, cfg.Duration)
			res.TwoPhase = append(res.TwoPhase, load.WithCPU(0, func() load.Result {
				return load.ClosedLoop(ctx, fmt.Sprintf("holdfast two-phase c=%d", c), c, cfg.Duration, r.twoPhaseCall(cfg.HoldfastURL, w))
			}))
			r.printStats()
		}
		if cfg.SkipNaive {
			res.Naive = append(res.Naive, load.Result{Name: "naive (skipped)"})
			continue
		}
		r.settle(ctx)
		fmt.Fprintf(cfg.Progress, "%s: naive, %d clients, %v\n", w.name, c, cfg.Duration)
		res.Naive = append(res.Naive, load.WithCPU(0, func() load.Result {
			return load.ClosedLoop(ctx, fmt.Sprintf("naive c=%d", c), c, cfg.Duration, r.call(cfg.NaiveURL, w))
		}))
	}
}

// openLoops runs Holdfast in an open loop at OpenRate, or at each of
// OpenFractions of its closed-loop peak, each after its warm-up.
func (r *transfersRun) openLoops(ctx context.Context, w workload, res *transfersWorkload) {
	cfg := r.cfg
	var rates []float64
	if cfg.OpenRate > 0 {
		rates = []float64{cfg.OpenRate}
	} else {
		peak := load.Peak(res.Holdfast).Throughput
		for _, f := range cfg.OpenFractions {
			rates = append(rates, f*peak)
		}
	}
	for _, rate := range rates {
		if rate <= 0 { // no closed loop succeeded: nothing to take a share of
			continue
		}
		r.settle(ctx)
		r.resetStats()
		fmt.Fprintf(cfg.Progress, "%s: holdfast open loop at %.0f/s, %v after a %v warm-up at that rate\n", w.name, rate, cfg.Duration, cfg.OpenWarmup)
		// The machine's CPU is read from the end of the warm-up, the span
		// the loop's figures cover.
		var warm load.Result
		res.Open = append(res.Open, load.WithCPU(cfg.OpenWarmup, func() (open load.Result) {
			warm, open = load.OpenLoopAfter(ctx, fmt.Sprintf("holdfast open %.0f/s", rate), rate, cfg.OpenWarmup, cfg.Duration, 4*r.maxConc, r.call(cfg.HoldfastURL, w))
			return open
		}))
		res.OpenWarm = append(res.OpenWarm, warm)
		r.printStats()
	}
}

// openLoopClients is the fewest connections the generator may open; the
// open loop may have four times as many requests outstanding, past which a
// request counts as not sent (an error).
const openLoopClients = 1024
