// Command holdfast is the Holdfast payments service: serve the API, run it
// for development with a private database, migrate, and more. It links no
// measurement code: benchmarks and lab scenarios are cmd/holdfast-lab's.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/cli"
)

// Set at build time by the Makefile (-ldflags "-X main.buildTime=…"); the
// version and commit, when empty, come from the binary's build information.
var (
	version   string
	commit    string
	buildTime string
)

const usage = `holdfast: a payments backend that does not fall over.

Usage:
  holdfast <command> [flags]

Commands:
  serve     serve the API against DATABASE_URL (and NATS_URL, or an embedded NATS)
  dev       serve on 127.0.0.1 with a private PostgreSQL in the data directory and a demo tenant
  migrate   apply database migrations to DATABASE_URL and exit
  adopt-stream  bind the event log to the streams on this NATS, knowingly (after the old stream was lost)
  healthcheck   ask a replica's /healthz or /readyz; exit 0 on 200 (for container health checks)
  version   print the version, VCS commit and build time (also --version)

Run 'holdfast <command> --help' for a command's flags. The benchmarks, the
lab scenarios and seed are holdfast-lab's ('holdfast-lab --help'), a binary
of its own that make build puts beside this one.
`

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// exitCode reports err on stderr and returns the process's exit status: 0
// for success and for --help, 1 otherwise.
func exitCode(err error, stderr io.Writer) int { return cli.ExitCode("holdfast", err, stderr) }

// parseArgs parses args into fs (see cli.ParseArgs).
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	return cli.ParseArgs(fs, args, stdout, stderr)
}

// versionText describes this build from its build information: the module
// version, the VCS commit (and whether the tree had changes) and its time,
// the build time when the Makefile recorded it, and the Go toolchain.
func versionText() string {
	v, rev, revTime, modified := version, commit, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				revTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev == "" {
		rev = "unknown (built without VCS information)"
	}
	if modified {
		rev += " (with uncommitted changes)"
	}
	if revTime != "" {
		rev += ", committed " + revTime
	}
	built := buildTime
	if built == "" {
		built = "unknown (make build records it)"
	}
	return fmt.Sprintf("holdfast %s\ncommit: %s\nbuilt:  %s\ngo:     %s %s/%s\n", v, rev, built, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func run(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, usage)
		return nil
	case args[0] == "version" || args[0] == "--version" || args[0] == "-version":
		fmt.Fprint(stdout, versionText())
		return nil
	}
	cmd, args := args[0], args[1:]
	app.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve", "dev":
		m := app.NewMain()
		m.Stdout = stdout
		if err := parseServe(cmd, args, &m.Config, stdout, stderr); err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			m.Stop()
			return err
		}
		<-ctx.Done()
		stop()
		fmt.Fprintln(stdout, "holdfast: shutting down")
		return m.Stop()
	case "migrate":
		return runMigrate(ctx, args, stdout, stderr)
	case "adopt-stream":
		return runAdoptStream(ctx, args, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
