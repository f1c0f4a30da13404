package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/holdfast/holdfast/postgres"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast migrate", flag.ContinueOnError)
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: holdfast migrate [flags]\n\nApply the database migrations that have not run yet, then exit.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("migrate needs DATABASE_URL (or --database-url)")
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: *url})
	if err != nil {
		return err
	}
	defer db.Close()
	return postgres.Migrate(ctx, db)
}
