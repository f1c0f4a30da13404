package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/media"
)

const labUsage = `Usage: holdfast lab list
       holdfast lab <scenario>|all [--scale small|full] [--out lab-results] [--database-url URL]

Runs the scenarios of "Building Software That Doesn't Fall Over" against real
components on loopback — the naive way, then Holdfast's — and writes
<out>/<scenario>/report.md, chart.svg and data.json. 'all' runs every
available scenario (about 2 minutes on 2 cores at the default scale).

Flags:
  --scale small|full   small (default) finishes quickly; full uses the seed's sizes
  --out DIR            where reports go (default lab-results)
  --database-url URL   PostgreSQL server to create the scenarios' databases on
                       (env DATABASE_URL); empty: a private cluster in a temp dir

Scenarios:
`

func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "helper" { // a scenario's own process; see lab.RunHelper
		return lab.RunHelper(ctx, args[1:], os.Stdin, stdout)
	}
	usage := func(w io.Writer) {
		fmt.Fprint(w, labUsage)
		printScenarios(w)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return nil
	}
	if args[0] == "list" {
		printScenarios(stdout)
		return nil
	}
	name := args[0]
	var scenarios []lab.Scenario
	if name == "all" {
		for _, s := range lab.Scenarios() {
			if s.Available() {
				scenarios = append(scenarios, s)
			}
		}
	} else {
		s, ok := lab.Lookup(name)
		if !ok {
			usage(stderr)
			return fmt.Errorf("unknown scenario %q", name)
		}
		if !s.Available() {
			return fmt.Errorf("scenario %q is not yet available", name)
		}
		scenarios = []lab.Scenario{s}
	}

	fs := flag.NewFlagSet("holdfast lab "+name, flag.ContinueOnError)
	scaleName := fs.String("scale", "small", "small or full")
	out := fs.String("out", "lab-results", "directory of the reports")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server for the scenarios' databases (env DATABASE_URL); empty: a private cluster")
	fs.Usage = func() { usage(fs.Output()) }
	if err := parseArgs(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	scale, err := lab.ParseScale(*scaleName)
	if err != nil || scale == lab.Tiny {
		return fmt.Errorf("--scale: want small or full, not %q", *scaleName)
	}

	env := &labEnv{serverURL: *dbURL, stderr: stderr}
	defer env.close()
	var failed []string
	start := time.Now()
	for i, s := range scenarios {
		fmt.Fprintf(stderr, "[%d/%d] %s: %s\n", i+1, len(scenarios), s.Name, s.Description)
		if err := env.run(ctx, s, scale, filepath.Join(*out, s.Name), stdout); err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
			failed = append(failed, s.Name)
		}
	}
	if len(scenarios) > 1 {
		fmt.Fprintf(stdout, "\n%d scenarios in %v; reports in %s/\n", len(scenarios), time.Since(start).Round(time.Second), *out)
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func printScenarios(w io.Writer) {
	for _, s := range lab.Scenarios() {
		desc := s.Description
		if !s.Available() {
			desc = "(not yet available) " + desc
		}
		fmt.Fprintf(w, "  %-14s %s\n", s.Name, desc)
	}
}

// labEnv gives scenarios their databases (one PostgreSQL server for the
// whole run, started when a scenario first needs it) and Holdfast servers
// (stopped after each scenario).
type labEnv struct {
	serverURL string // DATABASE_URL's server; empty: the private cluster
	stderr    io.Writer

	mu      sync.Mutex
	dir     string
	cluster *pglocal.Cluster
	mains   []*app.Main
	serves  int
	created []string // databases created on serverURL, dropped by close
}

func (e *labEnv) run(ctx context.Context, s lab.Scenario, scale lab.Scale, dir string, stdout io.Writer) error {
	defer e.stopServers()
	env := &lab.Env{
		Scale:       scale,
		Progress:    prefixWriter{"  ", e.stderr},
		NewDatabase: e.newDatabase,
		Serve:       e.serve,
		Spike:       e.spike,
		Helper: func(ctx context.Context, args ...string) *exec.Cmd {
			self, err := os.Executable()
			if err != nil {
				self = os.Args[0]
			}
			return exec.CommandContext(ctx, self, append([]string{"lab", "helper"}, args...)...)
		},
	}
	start := time.Now()
	r, err := s.Run(ctx, env)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := lab.WriteReport(dir, s, scale, elapsed, r, lab.ThisMachine()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%v): %s/report.md\n", s.Name, elapsed.Round(100*time.Millisecond), dir)
	for _, f := range r.Findings {
		fmt.Fprintf(stdout, "  - %s\n", f)
	}
	return nil
}

// newDatabase creates a fresh database and returns its URL.
func (e *labEnv) newDatabase(ctx context.Context) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.makeDir(); err != nil {
		return "", err
	}
	var b [6]byte
	rand.Read(b[:])
	name := "holdfast_lab_" + hex.EncodeToString(b[:])
	if e.serverURL != "" {
		conn, err := pgx.Connect(ctx, e.serverURL)
		if err != nil {
			return "", err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
		conn.Close(ctx)
		if err != nil {
			return "", err
		}
		u, err := url.Parse(e.serverURL)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		e.created = append(e.created, name)
		return u.String(), nil
	}
	if e.cluster == nil {
		fmt.Fprintln(e.stderr, "  starting a private PostgreSQL")
		c, err := pglocal.Start(ctx, pglocal.Config{Dir: e.dir + "/postgres"})
		if err != nil {
			return "", fmt.Errorf("start private PostgreSQL: %w", err)
		}
		e.cluster = c
	}
	if err := e.cluster.CreateDatabase(ctx, name); err != nil {
		return "", err
	}
	return e.cluster.URL(name), nil
}

// serve runs Holdfast on the database, as `holdfast serve` would, except
// that the rate limit is off: the scenarios measure other things, and send
// more than 1,000 requests a second with one key.
func (e *labEnv) serve(ctx context.Context, dbURL string, opts lab.ServeOptions) (string, error) {
	e.mu.Lock()
	err := e.makeDir()
	e.serves++
	dataDir := filepath.Join(e.dir, fmt.Sprintf("data-%d", e.serves))
	e.mu.Unlock()
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
	m.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m.Stdout = io.Discard
	// Replicas on one database share one NATS, as --nats-url makes them in
	// production: the first one's embedded server.
	e.mu.Lock()
	for _, prev := range e.mains {
		if prev.Config.DatabaseURL == dbURL && m.NATS == nil {
			m.NATS, err = prev.NATS.Connect(ctx, fmt.Sprintf("holdfast-lab-%d", e.serves))
		}
	}
	e.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := m.Start(ctx); err != nil {
		m.Stop()
		return "", err
	}
	e.mu.Lock()
	e.mains = append(e.mains, m)
	e.mu.Unlock()
	return m.HTTP.URL(), nil
}

// makeDir creates the run's temporary directory once; e.mu is held.
func (e *labEnv) makeDir() error {
	if e.dir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "holdfast-lab-")
	e.dir = dir
	return err
}

func (e *labEnv) stopServers() {
	e.mu.Lock()
	mains := e.mains
	e.mains = nil
	e.mu.Unlock()
	for i := len(mains) - 1; i >= 0; i-- {
		mains[i].Stop()
	}
}

func (e *labEnv) close() {
	e.stopServers()
	var errs []error
	if len(e.created) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, e.serverURL)
		errs = append(errs, err)
		if err == nil {
			for _, name := range e.created {
				_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				errs = append(errs, err)
			}
			conn.Close(ctx)
		}
	}
	if e.cluster != nil {
		errs = append(errs, e.cluster.Stop())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(e.stderr, "lab: cleaning up: %v\n", err)
	}
}

// prefixWriter indents each write (progress lines).
type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			io.WriteString(p.w, p.prefix+line)
		}
	}
	return len(b), nil
}

// spike runs the receipt spike of `holdfast bench receipts`, capped then
// naive, each on a fresh database of its own.
func (e *labEnv) spike(ctx context.Context, cfg lab.SpikeConfig) (capped, naive *lab.SpikeResult, err error) {
	f := spikeFlags{dbURL: e.serverURL, rate: cfg.Rate, duration: cfg.Duration, cap: cfg.Cap, conns: cfg.DBConns,
		maxDrain: cfg.MaxDrain, naiveMaxDrain: cfg.MaxDrain, width: 160, height: 120}
	images := make([][]byte, 16)
	for i := range images {
		images[i] = media.Generate(f.width, f.height, int64(i))
	}
	quiet := io.Discard
	if capped, _, err = spikeHoldfast(ctx, f, images, quiet); err != nil {
		return nil, nil, err
	}
	if naive, err = spikeNaive(ctx, f, images, quiet); err != nil {
		return nil, nil, err
	}
	return capped, naive, nil
}
