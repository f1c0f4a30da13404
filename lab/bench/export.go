package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
)

// ExportOptions are the settings of `holdfast-lab bench export`; its flags
// give their defaults.
type ExportOptions struct {
	DatabaseURL string        // server to create the database on; empty: a private cluster
	Entries     int           // entries of the exported account
	SlowFor     time.Duration // how long a slow client reads slowly; also each transfer run's length
	SlowRate    int64         // bytes per second a slow client reads
	Concurrent  int           // slow exports at once while transfers run
	Clients     int           // closed-loop transfer clients
	Parts       string        // the parts to run, some of "abc"
}

// Export runs the export benchmark on a fresh database: one account of
// o.Entries entries exported by Holdfast, by psql's \copy and by a
// naive.BufferedExport, then slow exports beside transfers; it prints the
// tables to stdout, progress to stderr, and ends by checking the ledger's
// invariants. A part (a) without psql on the machine is an error before
// anything starts.
func Export(ctx context.Context, o ExportOptions, stdout, stderr io.Writer) error {
	var psql string
	if strings.Contains(o.Parts, "a") {
		var err error
		if psql, err = Psql(); err != nil {
			return fmt.Errorf("psql not found (install PostgreSQL's client): %w", err)
		}
	}
	env, err := startBenchEnv(ctx, o.DatabaseURL, 16, stderr, func(c *app.Config) {
		c.ExportSlots, c.ExportSlotsPerTenant = o.Concurrent+2, o.Concurrent+2
	})
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	tenant, key, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	account, transferAccounts, err := seedExport(ctx, m.DB, tenant.ID, o.Entries, stderr)
	if err != nil {
		return err
	}
	naiveURL, closeNaive, err := serveBufferedExport(ctx, env.dbURL, tenant.ID)
	if err != nil {
		return err
	}
	defer closeNaive()

	fmt.Fprintf(stdout, "holdfast-lab bench export: %s\n", machine(ctx, m.DB.Pool))
	res, err := RunExport(ctx, ExportConfig{
		DatabaseURL: env.dbURL, Psql: psql, Tenant: tenant.ID, Account: account, Rows: int64(o.Entries),
		HoldfastURL: m.HTTP.URL(), APIKey: key.Secret, BufferedURL: naiveURL,
		SlowRate: o.SlowRate, SlowFor: o.SlowFor, Concurrent: o.Concurrent, Transfers: transferAccounts, Clients: o.Clients,
		Progress: stderr, Parts: o.Parts,
	})
	if err != nil {
		return err
	}
	printExport(stdout, res)
	return verifyAfterBench(ctx, m, tenant.ID, stdout)
}

// seedExport gives the tenant an account of entries entries, the one
// exported, and 1,000 funded accounts for the transfer load; it returns
// their ids.
func seedExport(ctx context.Context, db *postgres.DB, tenant string, entries int, progress io.Writer) (string, []string, error) {
	account, err := postgres.NewAccountService(db).CreateAccount(ctx, tenant, holdfast.AccountCreate{Currency: "USD"}, nil)
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(progress, "seeding %d entries\n", entries)
	start := time.Now()
	if err := SeedEntries(ctx, db.Pool, tenant, account.ID, entries, ProgressBar(progress, entries)); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(progress, "\nseeded in %v\n", time.Since(start).Round(time.Millisecond))
	transfers, err := SeedAccounts(ctx, db.Pool, tenant, "USD", 1_000, 1_000_000, false)
	if err != nil {
		return "", nil, err
	}
	return account.ID, transfers, Settle(ctx, db.Pool)
}

// serveBufferedExport serves the naive export of the tenant's accounts on
// its own loopback port, with its own small pool; close stops both.
func serveBufferedExport(ctx context.Context, dbURL, tenant string) (url string, close func(), err error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: 2})
	if err != nil {
		return "", nil, err
	}
	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: 2})
	if err != nil {
		db.Close()
		return "", nil, err
	}
	url, stop, err := ServeLoopback(&naive.BufferedExport{Exports: exports, Tenant: tenant})
	if err != nil {
		exports.Close()
		db.Close()
		return "", nil, err
	}
	return url, func() { stop(); exports.Close(); db.Close() }, nil
}
