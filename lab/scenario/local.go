package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/lab/bench"
)

// Local runs scenarios on this machine: it gives them their databases
// (one PostgreSQL server for the whole run, started when a scenario first
// needs it) and Holdfast servers in this process (stopped after each
// scenario). Close removes what it made.
type Local struct {
	ServerURL string    // server to create the databases on; empty: a private cluster in a temp dir
	Stderr    io.Writer // progress and the servers' errors
	// Helper returns a command that runs RunHelper with args in a new
	// process of this program.
	Helper func(ctx context.Context, args ...string) *exec.Cmd

	mu      sync.Mutex
	dir     string
	cluster *pglocal.Cluster
	mains   []*app.Main
	serves  int
	created []string // databases created on ServerURL, dropped by Close
}

// Env returns the environment of a scenario run at scale, its progress
// lines to progress: its databases and servers are l's.
func (l *Local) Env(scale Scale, progress io.Writer) *Env {
	return &Env{
		Scale:       scale,
		Progress:    progress,
		NewDatabase: l.newDatabase,
		Serve:       l.serve,
		Helper:      l.Helper,
		Spike: func(ctx context.Context, cfg bench.SpikeConfig) (capped, naive *bench.SpikeResult, err error) {
			return bench.Spike(ctx, l.ServerURL, cfg)
		},
		Webhooks: func(ctx context.Context, o bench.WebhooksOptions) ([]bench.WebhookRun, error) {
			o.DatabaseURL = l.ServerURL
			runs, _, err := bench.RunWebhooks(ctx, o, progress)
			return runs, err
		},
	}
}

// newDatabase creates a fresh database and returns its URL.
func (l *Local) newDatabase(ctx context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.makeDir(); err != nil {
		return "", err
	}
	var b [6]byte
	rand.Read(b[:])
	name := "holdfast_lab_" + hex.EncodeToString(b[:])
	if l.ServerURL != "" {
		conn, err := pgx.Connect(ctx, l.ServerURL)
		if err != nil {
			return "", err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
		conn.Close(ctx)
		if err != nil {
			return "", err
		}
		u, err := url.Parse(l.ServerURL)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		l.created = append(l.created, name)
		return u.String(), nil
	}
	if l.cluster == nil {
		fmt.Fprintln(l.Stderr, "  starting a private PostgreSQL")
		c, err := pglocal.Start(ctx, pglocal.Config{Dir: l.dir + "/postgres"})
		if err != nil {
			return "", fmt.Errorf("start private PostgreSQL: %w", err)
		}
		l.cluster = c
	}
	if err := l.cluster.CreateDatabase(ctx, name); err != nil {
		return "", err
	}
	return l.cluster.URL(name), nil
}

// serve runs Holdfast on the database, as `holdfast serve` would, except
// that the rate limit is off: the scenarios measure other things, and send
// more than 1,000 requests a second with one key.
func (l *Local) serve(ctx context.Context, dbURL string, opts ServeOptions) (string, error) {
	l.mu.Lock()
	err := l.makeDir()
	l.serves++
	dataDir := filepath.Join(l.dir, fmt.Sprintf("data-%d", l.serves))
	l.mu.Unlock()
	if err != nil {
		return "", err
	}
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = dbURL
	m.Config.DataDir = dataDir
	m.Config.DBMaxConns = 16
	m.Config.RateLimit = 0
	if opts.ExportSlots > 0 {
		m.Config.ExportSlots, m.Config.ExportSlotsPerTenant = opts.ExportSlots, opts.ExportSlots
	}
	// Errors only: a scenario that overloads Holdfast on purpose would
	// otherwise log a warning per shed request.
	m.Logger = slog.New(slog.NewTextHandler(l.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m.Stdout = io.Discard
	// Replicas on one database share one NATS, as --nats-url makes them in
	// production: the first one's embedded server.
	l.mu.Lock()
	for _, prev := range l.mains {
		if prev.Config.DatabaseURL == dbURL && m.NATS == nil {
			m.NATS, err = prev.NATS.Connect(ctx, fmt.Sprintf("holdfast-lab-%d", l.serves))
		}
	}
	l.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := m.Start(ctx); err != nil {
		m.Stop()
		return "", err
	}
	l.mu.Lock()
	l.mains = append(l.mains, m)
	l.mu.Unlock()
	return m.HTTP.URL(), nil
}

// makeDir creates the run's temporary directory once; l.mu is held.
func (l *Local) makeDir() error {
	if l.dir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "holdfast-lab-")
	l.dir = dir
	return err
}

// StopServers stops the Holdfast servers started so far, last first.
func (l *Local) StopServers() {
	l.mu.Lock()
	mains := l.mains
	l.mains = nil
	l.mu.Unlock()
	for i := len(mains) - 1; i >= 0; i-- {
		mains[i].Stop()
	}
}

// Close stops the servers and removes the databases, the private cluster
// and the temporary directory; a failure is reported on Stderr.
func (l *Local) Close() {
	l.StopServers()
	var errs []error
	if len(l.created) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, l.ServerURL)
		errs = append(errs, err)
		if err == nil {
			for _, name := range l.created {
				_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				errs = append(errs, err)
			}
			conn.Close(ctx)
		}
	}
	if l.cluster != nil {
		errs = append(errs, l.cluster.Stop())
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(l.Stderr, "lab: cleaning up: %v\n", err)
	}
}
