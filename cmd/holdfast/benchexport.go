package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/postgres"
)

func benchExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast bench export", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's database on (env DATABASE_URL); empty: a private cluster in a temp dir")
	entries := fs.Int("entries", 2_000_000, "entries of the exported account")
	slowSeconds := fs.Int("slow-seconds", 20, "how many seconds a slow client reads slowly; also the length of each transfer run")
	slowRate := fs.Int64("slow-rate", 1<<20, "bytes per second a slow client reads")
	concurrent := fs.Int("concurrent", 16, "slow exports at once while transfers run")
	clients := fs.Int("clients", 16, "closed-loop transfer clients")
	parts := fs.String("parts", "abc", "the parts to run, some of a, b and c (the psql client is needed for (a) only)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast bench export [flags]

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
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	slowFor := time.Duration(*slowSeconds) * time.Second
	if *entries < 1 || slowFor <= 0 || *slowRate < 1 || *concurrent < 1 || *clients < 1 {
		return fmt.Errorf("--entries, --slow-seconds, --slow-rate, --concurrent and --clients must be positive")
	}
	if *parts == "" || strings.Trim(*parts, "abc") != "" {
		return fmt.Errorf("--parts %q: want some of a, b and c", *parts)
	}
	var psql string
	if strings.Contains(*parts, "a") {
		var err error
		if psql, err = lab.Psql(); err != nil {
			return fmt.Errorf("psql not found (install PostgreSQL's client): %w", err)
		}
	}

	env, err := startBenchEnv(ctx, *dbURL, 16, stderr, func(c *app.Config) {
		c.ExportSlots, c.ExportSlotsPerTenant = *concurrent+2, *concurrent+2
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
	account, err := postgres.NewAccountService(m.DB).CreateAccount(ctx, tenant.ID, holdfast.AccountCreate{Currency: "USD"}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "seeding %d entries\n", *entries)
	start := time.Now()
	if err := lab.SeedEntries(ctx, m.DB.Pool, tenant.ID, account.ID, *entries, progressBar(stderr, *entries)); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "\nseeded in %v\n", time.Since(start).Round(time.Millisecond))
	transferAccounts, err := lab.SeedAccounts(ctx, m.DB.Pool, tenant.ID, "USD", 1_000, 1_000_000, false)
	if err != nil {
		return err
	}
	if err := lab.Settle(ctx, m.DB.Pool); err != nil {
		return err
	}

	// The naive server: its own small pool, on its own loopback port.
	naiveDB, err := postgres.Open(ctx, postgres.Config{URL: env.dbURL, MaxConns: 2})
	if err != nil {
		return err
	}
	defer naiveDB.Close()
	naiveExports, err := postgres.NewExportService(naiveDB, postgres.ExportConfig{MaxConns: 2})
	if err != nil {
		return err
	}
	defer naiveExports.Close()
	naiveURL, closeNaive, err := serveLoopback(&lab.BufferedExport{Exports: naiveExports, Tenant: tenant.ID})
	if err != nil {
		return err
	}
	defer closeNaive()

	fmt.Fprintf(stdout, "holdfast bench export: %s\n", machine(ctx, m.DB.Pool))
	res, err := lab.BenchExport(ctx, lab.ExportBenchConfig{
		DatabaseURL: env.dbURL, Psql: psql, Tenant: tenant.ID, Account: account.ID, Rows: int64(*entries),
		HoldfastURL: m.HTTP.URL(), APIKey: key.Secret, BufferedURL: naiveURL,
		SlowRate: *slowRate, SlowFor: slowFor, Concurrent: *concurrent, Transfers: transferAccounts, Clients: *clients,
		Progress: stderr, Parts: *parts,
	})
	if err != nil {
		return err
	}
	lab.PrintExport(stdout, res)
	return verifyAfterBench(ctx, m, tenant.ID, stdout)
}
