package pglocal

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// start starts a Fast cluster in dir and stops it when the test ends.
func start(t *testing.T, dir string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{Dir: dir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// connect opens a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if !hasServerBinaries(dir) {
		t.Errorf("FindBinDir() = %s, which lacks initdb or postgres", dir)
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{port: 5433, sockDir: "/tmp/a b+c&d"}
	u := c.URL("app")
	if want := "postgres://postgres@/app?host=/tmp/a%20b%2Bc%26d&port=5433&sslmode=disable"; u != want {
		t.Errorf("URL = %s, want %s", u, want)
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != c.sockDir || cfg.Port != 5433 || cfg.User != "postgres" || cfg.Database != "app" || cfg.TLSConfig != nil {
		t.Errorf("pgx parses %s as host %q port %d user %q database %q tls %v", u, cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.TLSConfig != nil)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := start(t, t.TempDir())
	ctx := t.Context()

	var one int
	if err := connect(t, c.URL("postgres")).QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	for range 2 {
		if err := c.CreateDatabase(ctx, `holdfast "test"`); err != nil {
			t.Fatal(err)
		}
	}
	var db string
	if err := connect(t, c.URL(`holdfast "test"`)).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != `holdfast "test"` {
		t.Fatalf("current_database() = %q, %v", db, err)
	}
	if err := c.CreateDatabase(ctx, strings.Repeat("x", 64)); err == nil {
		t.Error("CreateDatabase accepted a 64-byte name")
	}

	for range 2 {
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Error("connected after Stop")
	}
}

// TestRestart checks that data survives a restart, that a second server
// cannot start on a running cluster and that a stale pid file is ignored.
// The directory has a space to check that paths are quoted.
func TestRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data dir")
	ctx := t.Context()

	c := start(t, dir)
	if _, err := connect(t, c.URL("postgres")).Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	_, err := Start(ctx, Config{Dir: dir, Fast: true})
	if pid := c.cmd.Process.Pid; err == nil || !strings.Contains(err.Error(), "already running") || !strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)) {
		t.Errorf("second Start on a running cluster: err = %v, want one naming pid %d", err, pid)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// A pid file naming a live process that is not postgres is stale.
	pidFile := filepath.Join(dir, "pgdata", "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = start(t, dir)
	var v string
	if err := connect(t, c.URL("postgres")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "hello" {
		t.Fatalf("after restart: v = %q, %v", v, err)
	}
}

// TestStopAfterCrash checks that Stop returns nil, promptly, for a server that
// died, and that a new server starts on its data. The directory is too long
// for a socket path, to check the socket goes elsewhere.
func TestStopAfterCrash(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))

	c := start(t, dir)
	if c.sockDir == dir || !c.tmpSock {
		t.Fatalf("socket directory = %s, want a short one under /tmp", c.sockDir)
	}
	connect(t, c.URL("postgres")) // a backend to leave behind
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	// An error would say Stop waited out its timeout and killed what was left.
	if err := c.Stop(); err != nil {
		t.Errorf("Stop after crash: %v", err)
	}
	if _, err := os.Stat(c.sockDir); !os.IsNotExist(err) {
		t.Errorf("socket directory %s left behind: %v", c.sockDir, err)
	}

	// The stale postmaster.pid must not stop a new server; give the killed
	// server's backends a moment to notice and release shared memory.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		c, err := Start(ctx, Config{Dir: dir, Fast: true})
		cancel()
		if err == nil {
			c.Stop()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart after crash: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInterruptedInitdb checks that an initdb cut short leaves no cluster
// behind for the next Start to trip on.
func TestInterruptedInitdb(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if c, err := Start(ctx, Config{Dir: dir, Fast: true}); err == nil {
		c.Stop()
		t.Skip("initdb was too fast to interrupt")
	}
	if _, err := os.Stat(filepath.Join(dir, "pgdata")); !os.IsNotExist(err) {
		t.Fatalf("interrupted initdb left pgdata behind: %v", err)
	}
	start(t, dir)
}
