// Command holdfast-lab measures Holdfast: the benchmarks, each beside its
// naive baseline; the lab scenarios of "Building Software That Doesn't
// Fall Over", with their reports and charts; and seed, which gives an
// account a long history for trying exports. The server binary, holdfast,
// links none of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/cli"
)

const usage = `holdfast-lab: Holdfast's benchmarks and lab scenarios, each beside the naive way.

Usage:
  holdfast-lab <command> [flags]

Commands:
  bench     run a benchmark: Holdfast beside the naive way, in one run
  lab       run a scenario of the seed, naive beside Holdfast, and write its report and chart
  seed      give an account a long history of entries quickly (for trying exports)

Run 'holdfast-lab <command> --help' for a command's flags. The service
itself is the holdfast binary ('holdfast --help').
`

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// exitCode reports err on stderr and returns the process's exit status: 0
// for success and for --help, 1 otherwise.
func exitCode(err error, stderr io.Writer) int { return cli.ExitCode("holdfast-lab", err, stderr) }

// parseArgs parses args into fs (see cli.ParseArgs).
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	return cli.ParseArgs(fs, args, stdout, stderr)
}

// usageOf returns a flag set's Usage: text, then the flags.
func usageOf(fs *flag.FlagSet, text string) func() {
	return func() {
		fmt.Fprint(fs.Output(), text)
		fs.PrintDefaults()
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	// The benchmarks run Holdfast in this process: with the server's
	// collector settings, so that they measure what serve does.
	app.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "lab":
		return runLab(ctx, args, stdout, stderr)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "seed":
		return runSeed(ctx, args, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
