// Package cli holds what Holdfast's two binaries (holdfast and
// holdfast-lab) share about their command lines: --help on stdout with
// exit status 0, and errors on stderr with status 1.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// ExitCode reports err on stderr, after prog's name, and returns the
// process's exit status: 0 for success and for --help, 1 otherwise.
func ExitCode(prog string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, prog+":", err)
		return 1
	}
}

// ParseArgs parses args into fs. Asked for --help, it prints the usage to
// stdout and returns flag.ErrHelp (exit 0); for a bad flag it prints the
// error and the usage to stderr. fs.Usage writes to fs.Output().
func ParseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		stdout.Write(out.Bytes())
	} else {
		stderr.Write(out.Bytes())
	}
	return err
}
