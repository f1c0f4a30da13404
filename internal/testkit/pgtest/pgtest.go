// Package pgtest gives each test a fresh PostgreSQL database.
//
// A test binary opts in with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and its tests call NewDatabase. The server is the one named by the
// TEST_DATABASE_URL environment variable if it is set, otherwise a private
// cluster (see package pglocal) that lives as long as the test binary.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/jackc/pgx/v5"
)

// serverURL is the URL of the maintenance database of the server in use,
// set by Main before any test runs; empty if Main was not used.
var serverURL string

// Main runs the tests of a test binary, m, with a PostgreSQL server available
// to NewDatabase, then exits with their result; call it from TestMain.
//
// If TEST_DATABASE_URL is set, it is the server: a postgres:// URL of a
// superuser (databases are created and dropped on it), checked for a
// connection before the tests run. Otherwise Main starts a private Fast
// cluster in a temporary directory and, after the tests, stops it and removes
// the directory. If the server is unusable, Main reports why on stderr and
// exits with status 1 without running the tests.
//
// A test binary that is killed (a panic, a -timeout, Ctrl-C) leaves the
// directory behind, named pgtest-* under os.TempDir(); on Linux the server
// still shuts down.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run is Main without the exit, so that deferred cleanups run.
func run(m *testing.M) int {
	if env := os.Getenv("TEST_DATABASE_URL"); env != "" {
		u, err := withDatabase(env, "postgres")
		if err == nil {
			err = ping(u)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: TEST_DATABASE_URL: %v\n", err)
			return 1
		}
		serverURL = u
		return m.Run()
	}

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cluster, err := pglocal.Start(ctx, pglocal.Config{Dir: dir, Fast: true})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: starting a private PostgreSQL (or set TEST_DATABASE_URL to use a server): %v\n", err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}()
	serverURL = cluster.URL("postgres")
	return m.Run()
}

// ping checks that the server at url takes connections.
func ping(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// ServerURL returns the URL of the maintenance database ("postgres") of the
// server in use, as its superuser. It panics if the test binary does not run
// its tests through Main.
func ServerURL() string {
	if serverURL == "" {
		panic("pgtest: ServerURL needs " + mainHint)
	}
	return serverURL
}

// mainHint tells how to use Main.
const mainHint = "the test binary to run its tests through pgtest.Main: add func TestMain(m *testing.M) { pgtest.Main(m) }"

// NewDatabase creates a fresh, empty database and returns its URL, which
// pgx.Connect and pgxpool.New accept. The database is dropped when tb and its
// subtests end, even if connections to it remain (DROP DATABASE ... WITH
// (FORCE)); failing to drop it fails tb. Its name is the test binary's (the
// package name and "_test") and a random suffix, for example
// ledger_test_1f2e3d4c5b6a7988. NewDatabase may be called from parallel
// tests. It fails tb if the database cannot be created, or if the test
// binary does not use Main.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	if serverURL == "" {
		tb.Fatal("pgtest: NewDatabase needs " + mainHint)
	}
	name := databaseName()
	dbURL, err := withDatabase(serverURL, name)
	if err == nil {
		err = execServer(tb.Context(), "CREATE DATABASE "+name)
	}
	if err != nil {
		tb.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execServer(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return dbURL
}

// databaseName returns a new database name: the test binary's name, made of
// lowercase letters, digits and underscores, and a random suffix. It needs no
// quoting in SQL.
func databaseName() string {
	prefix := strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			return r
		case 'A' <= r && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '_'
	}, filepath.Base(os.Args[0])) // "ledger.test"
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	if prefix == "" || '0' <= prefix[0] && prefix[0] <= '9' {
		prefix = "t" + prefix
	}
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// withDatabase returns the postgres:// URL server with its database set to
// name.
func withDatabase(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", errors.New("not a postgres:// URL") // not echoed: it may hold a password
	}
	u.Path, u.RawPath = "/"+name, ""
	// A dbname query parameter would override the path.
	var query []string
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if k, _, _ := strings.Cut(kv, "="); kv != "" && k != "dbname" && k != "database" {
			query = append(query, kv)
		}
	}
	u.RawQuery = strings.Join(query, "&")
	return u.String(), nil
}

// execServer runs sql on the maintenance database of the server.
func execServer(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
