package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelp_ExitsZeroOnStdout: every command's --help prints its usage to
// stdout, nothing to stderr, and exits 0, as `holdfast-lab --help` does.
func TestHelp_ExitsZeroOnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"-h"}, {"seed", "--help"},
		{"bench", "--help"}, {"bench", "transfers", "--help"}, {"bench", "export", "--help"},
		{"bench", "events", "--help"}, {"bench", "receipts", "--help"}, {"bench", "overload", "--help"}, {"bench", "webhooks", "--help"},
		{"bench", "soak", "--help"},
		{"lab", "--help"}, {"lab", "all", "--help"}, {"lab", "io", "--help"},
	} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(args, &stdout, &stderr), &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "Usage") || stderr.Len() != 0 {
			t.Errorf("holdfast-lab %s: exit %d, stdout %q…, stderr %q; want 0, the usage on stdout, nothing on stderr",
				strings.Join(args, " "), code, head(stdout.String()), head(stderr.String()))
		}
	}
}

// TestHelp_BadFlagExitsOneOnStderr: a flag that does not exist is an error,
// named on stderr with the usage, and exit 1.
func TestHelp_BadFlagExitsOneOnStderr(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"seed", "--no-such-flag"}, {"bench", "transfers", "--no-such-flag"}, {"bench", "soak", "--no-such-flag"}, {"bench", "nosuch"}, {"nosuch"}} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(args, &stdout, &stderr), &stderr)
		if code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage") {
			t.Errorf("holdfast-lab %s: exit %d, stdout %q, stderr %q…; want 1, nothing on stdout, the error and usage on stderr",
				strings.Join(args, " "), code, head(stdout.String()), head(stderr.String()))
		}
	}
}

func head(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}
