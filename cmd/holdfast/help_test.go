package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestHelp_ExitsZeroOnStdout: every command's --help prints its usage to
// stdout, nothing to stderr, and exits 0, as `holdfast --help` does.
func TestHelp_ExitsZeroOnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"-h"},
		{"serve", "--help"}, {"dev", "--help"}, {"dev", "-h"},
		{"migrate", "--help"}, {"adopt-stream", "--help"}, {"healthcheck", "--help"},
	} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(args, &stdout, &stderr), &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "Usage") || stderr.Len() != 0 {
			t.Errorf("holdfast %s: exit %d, stdout %q…, stderr %q; want 0, the usage on stdout, nothing on stderr",
				strings.Join(args, " "), code, head(stdout.String()), head(stderr.String()))
		}
	}
}

// TestHelp_BadFlagExitsOneOnStderr: a flag that does not exist is an error,
// named on stderr with the usage, and exit 1.
func TestHelp_BadFlagExitsOneOnStderr(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"serve", "--no-such-flag"}, {"migrate", "--no-such-flag"}, {"nosuch"}, {"bench"}} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(args, &stdout, &stderr), &stderr)
		if code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage") {
			t.Errorf("holdfast %s: exit %d, stdout %q, stderr %q…; want 1, nothing on stdout, the error and usage on stderr",
				strings.Join(args, " "), code, head(stdout.String()), head(stderr.String()))
		}
	}
}

// TestVersion: `version` and `--version` both print the build's version,
// its VCS commit and the Go version, from the binary's build information.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(args, &stdout, &stderr), &stderr)
		out := stdout.String()
		if code != 0 || !strings.HasPrefix(out, "holdfast ") || !strings.Contains(out, "commit:") ||
			!strings.Contains(out, "built:") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("holdfast %s: exit %d, printed %q (stderr %q); want the version, commit, build time and %s",
				args[0], code, out, stderr.String(), runtime.Version())
		}
	}
}

func head(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}
