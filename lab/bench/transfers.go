package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
)

// TransfersOptions are the settings of `holdfast-lab bench transfers`;
// its flags give their defaults.
type TransfersOptions struct {
	DatabaseURL   string        // server to create the database on; empty: a private cluster
	Duration      time.Duration // of each run
	Accounts      int           // customer accounts
	Concurrency   []int         // closed-loop client counts
	Pool          int           // database connections of Holdfast and, apart, of the naive server
	Workloads     []string      // "uniform", "hot"
	Committers    int           // Holdfast's group-commit transactions in flight at once
	Admission     bool          // keep Holdfast's admission control on
	OpenRate      float64       // one open loop at this rate instead of OpenFractions
	OpenFractions []float64     // open loops at these fractions of Holdfast's peak
	OpenWarmup    time.Duration // each open loop's warm-up at its rate
	TwoPhase      bool          // also two-phase payments beside single-phase (--workload two-phase)
	SkipNaive     bool          // measure Holdfast only
	NaiveEvents   bool          // the naive server writes each transfer's event, as Holdfast does
}

// Transfers runs the transfer benchmark on a fresh database: Holdfast
// (group commit) beside a naive.Ledger and the raw SQL ceiling, then an
// open loop; it prints the table to stdout, progress to stderr, and ends
// by checking the ledger's invariants, whose failure is its error.
func Transfers(ctx context.Context, o TransfersOptions, stdout, stderr io.Writer) error {
	// Admission control off: this measures group commit's capacity; a closed
	// loop of 256 clients past the adaptive limit would measure shedding
	// (that is `holdfast-lab bench overload`'s job).
	env, err := startBenchEnv(ctx, o.DatabaseURL, o.Pool, stderr, func(c *app.Config) { c.Committers, c.Admission = o.Committers, o.Admission })
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	tenant, key, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	naivePool, err := openNaivePool(ctx, env.dbURL, o.Pool)
	if err != nil {
		return err
	}
	defer naivePool.Close()
	naiveURL, closeNaive, err := ServeLoopback(&naive.Ledger{Pool: naivePool, Tenant: tenant.ID, Events: o.NaiveEvents})
	if err != nil {
		return err
	}
	defer closeNaive()

	fmt.Fprintf(stdout, "holdfast-lab bench transfers: %s\n", machine(ctx, naivePool))
	results, err := runTransfers(ctx, transfersConfig{
		Pool: naivePool, Tenant: tenant.ID, HoldfastURL: m.HTTP.URL(), APIKey: key.Secret, NaiveURL: naiveURL,
		Accounts: o.Accounts, Concurrency: o.Concurrency, Duration: o.Duration, OpenRate: o.OpenRate, OpenFractions: o.OpenFractions, OpenWarmup: o.OpenWarmup, Progress: stderr,
		Workloads: o.Workloads, SkipNaive: o.SkipNaive, TwoPhase: o.TwoPhase, ServerStats: batchStats(m),
		Drain: m.DrainEvents,
	})
	if err != nil {
		return err
	}
	printTransfers(stdout, results)
	return verifyAfterBench(ctx, m, tenant.ID, stdout)
}

// openNaivePool opens the naive server's pool of size conns, which the raw
// SQL ceiling also uses; it encodes array parameters as Holdfast's pools do.
func openNaivePool(ctx context.Context, dbURL string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL + poolParam(dbURL, conns))
	if err != nil {
		return nil, err
	}
	cfg.AfterConnect = postgres.RegisterArrays
	return pgxpool.NewWithConfig(ctx, cfg)
}
