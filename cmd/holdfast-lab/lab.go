package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/lab/scenario"
)

const labUsage = `Usage: holdfast-lab lab list
       holdfast-lab lab <scenario>|all [--scale small|full] [--out lab-results] [--database-url URL]

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
	if len(args) > 0 && args[0] == "helper" { // a scenario's own process; see scenario.RunHelper
		return scenario.RunHelper(ctx, args[1:], os.Stdin, stdout)
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
	scenarios, err := selectScenarios(name)
	if err != nil {
		usage(stderr)
		return err
	}

	fs := flag.NewFlagSet("holdfast-lab lab "+name, flag.ContinueOnError)
	scaleName := fs.String("scale", "small", "small or full")
	out := fs.String("out", "lab-results", "directory of the reports")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server for the scenarios' databases (env DATABASE_URL); empty: a private cluster")
	fs.Usage = func() { usage(fs.Output()) }
	if err := parseArgs(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	scale, err := scenario.ParseScale(*scaleName)
	if err != nil || scale == scenario.Tiny {
		return fmt.Errorf("--scale: want small or full, not %q", *scaleName)
	}

	local := &scenario.Local{ServerURL: *dbURL, Stderr: stderr, Helper: helperCommand}
	defer local.Close()
	var failed []string
	start := time.Now()
	for i, s := range scenarios {
		fmt.Fprintf(stderr, "[%d/%d] %s: %s\n", i+1, len(scenarios), s.Name, s.Description)
		if err := runScenario(ctx, local, s, scale, filepath.Join(*out, s.Name), stdout, stderr); err != nil {
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

// selectScenarios returns the scenario of that name, or every available
// one for "all".
func selectScenarios(name string) ([]scenario.Scenario, error) {
	if name == "all" {
		var all []scenario.Scenario
		for _, s := range scenario.Scenarios() {
			if s.Available() {
				all = append(all, s)
			}
		}
		return all, nil
	}
	s, ok := scenario.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q", name)
	}
	if !s.Available() {
		return nil, fmt.Errorf("scenario %q is not yet available", name)
	}
	return []scenario.Scenario{s}, nil
}

// runScenario runs s at scale on local's databases and servers, writes its
// report into dir and prints where, with its findings, on stdout.
func runScenario(ctx context.Context, local *scenario.Local, s scenario.Scenario, scale scenario.Scale, dir string, stdout, stderr io.Writer) error {
	defer local.StopServers()
	start := time.Now()
	r, err := s.Run(ctx, local.Env(scale, prefixWriter{"  ", stderr}))
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := report.Write(dir, s.Heading(scale, elapsed), r, report.ThisMachine()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%v): %s/report.md\n", s.Name, elapsed.Round(100*time.Millisecond), dir)
	for _, f := range r.Findings {
		fmt.Fprintf(stdout, "  - %s\n", f)
	}
	return nil
}

// helperCommand runs a scenario's helper (scenario.RunHelper) in a new
// process of this binary: `holdfast-lab lab helper …`.
func helperCommand(ctx context.Context, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return exec.CommandContext(ctx, self, append([]string{"lab", "helper"}, args...)...)
}

func printScenarios(w io.Writer) {
	for _, s := range scenario.Scenarios() {
		desc := s.Description
		if !s.Available() {
			desc = "(not yet available) " + desc
		}
		fmt.Fprintf(w, "  %-14s %s\n", s.Name, desc)
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
