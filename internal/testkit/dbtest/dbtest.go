// Package dbtest opens Holdfast's database for a test: a pool on a fresh,
// migrated PostgreSQL database from package pgtest. It imports the postgres
// adapter and nothing above it, so the tests of any package may use it
// without linking the HTTP layer or the application.
//
// Its test binary must run through pgtest.Main (see there).
package dbtest

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// MustOpenDB returns a pool of at most 20 connections on a fresh, migrated
// database, closed when tb ends; it fails tb if the database cannot be
// created, opened or migrated.
func MustOpenDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(tb), MaxConns: 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	if err := postgres.Migrate(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	return db
}
