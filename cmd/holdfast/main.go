// Command holdfast is the Holdfast payments service: serve the API, run it
// for development with a private database, migrate, and more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `holdfast: a payments backend that does not fall over.

Usage:
  holdfast <command> [flags]

Commands:
  serve     serve the API against DATABASE_URL (and NATS_URL, or an embedded NATS)
  dev       serve with a private PostgreSQL in the data directory and a demo tenant
  migrate   apply database migrations to DATABASE_URL and exit
  adopt-stream  bind the event log to the streams on this NATS, knowingly (after the old stream was lost)
  seed      give an account a long history of entries quickly (for trying exports)
  bench     run a benchmark: Holdfast beside the naive way, in one run
  lab       run a scenario of the seed, naive beside Holdfast, and write its report and chart
  version   print the version

Run 'holdfast <command> --help' for a command's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "holdfast:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve", "dev":
		m := NewMain()
		m.Stdout = stdout
		m.Config.Dev = cmd == "dev"
		if err := m.ParseFlags(cmd, args, stderr); err != nil {
			return err
		}
		if err := m.Run(ctx); err != nil {
			m.Close()
			return err
		}
		<-ctx.Done()
		stop()
		fmt.Fprintln(stdout, "holdfast: shutting down")
		return m.Close()
	case "lab":
		return runLab(ctx, args, stdout, stderr)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args, stderr)
	case "adopt-stream":
		return runAdoptStream(ctx, args, stdout, stderr)
	case "seed":
		return runSeed(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "holdfast", version)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
