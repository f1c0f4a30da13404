package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/postgres"
)

func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast-lab seed", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a migrated database (env DATABASE_URL)")
	entries := fs.Int("entries", 2_000_000, "entries to give the account")
	tenantID := fs.String("tenant", "", "existing tenant to seed (a new API key is created for it); empty: a new tenant")
	accountID := fs.String("account", "", "existing account of the tenant to seed; empty: a new USD account without overdraft")
	base := fs.String("url", "http://localhost:8080", "where Holdfast serves, for the curl line printed at the end")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast-lab seed [flags]

Give one account a realistic history quickly (COPY, one transaction): n
transfers against a new overdraft counterparty account, the first funding
the account, then alternating debits and credits of random amounts over the
past year, descriptions with commas, quotes and non-ASCII text. Creates a
tenant and a USD account unless --tenant/--account name them, and an API
key for the tenant. Prints the tenant, the API key, the account and a curl line that exports
the account as CSV. The database must be migrated ('holdfast migrate').

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *dbURL == "" {
		return errors.New("seed needs DATABASE_URL (or --database-url)")
	}
	if *entries < 1 {
		return errors.New("--entries must be at least 1")
	}
	if *accountID != "" && *tenantID == "" {
		return errors.New("--account needs --tenant")
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: *dbURL})
	if err != nil {
		return err
	}
	defer db.Close()
	tenants := postgres.NewTenantService(db)
	var secret string
	if *tenantID == "" {
		t, k, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "seed"}, nil)
		if err != nil {
			return err
		}
		*tenantID, secret = t.ID, k.Secret
	} else {
		k, err := tenants.CreateAPIKey(ctx, *tenantID, nil)
		if err != nil {
			return err
		}
		secret = k.Secret
	}
	if *accountID == "" {
		a, err := postgres.NewAccountService(db).CreateAccount(ctx, *tenantID, holdfast.AccountCreate{Currency: "USD"}, nil)
		if err != nil {
			return err
		}
		*accountID = a.ID
	}
	start := time.Now()
	if err := bench.SeedEntries(ctx, db.Pool, *tenantID, *accountID, *entries, bench.ProgressBar(stderr, *entries)); err != nil {
		fmt.Fprintln(stderr)
		return err
	}
	fmt.Fprintf(stderr, "\nseeded %d entries in %v\n", *entries, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, `tenant:   %s
API key:  %s
account:  %s

Export it:
  curl -s -H "Authorization: Bearer %s" %s/v1/accounts/%s/transactions.csv -o %s.csv
`, *tenantID, secret, *accountID, secret, strings.TrimSuffix(*base, "/"), *accountID, *accountID)
	return nil
}
