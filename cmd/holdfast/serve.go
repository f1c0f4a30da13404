package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/holdfast/holdfast/app"
)

// parseServe reads the flags of serve or dev (cmd) into c, with the
// environment variables of the settings table as defaults. --help prints
// the usage to stdout and returns flag.ErrHelp.
func parseServe(cmd string, args []string, c *app.Config, stdout, stderr io.Writer) error {
	c.Dev = cmd == "dev"
	if c.Dev {
		if c.Addr == app.DefaultAddr {
			c.Addr = app.DevAddr
		}
		if c.NATSListen == "" {
			c.NATSListen = app.DevNATSListen
		}
		// A developer points endpoints at localhost.
		c.Webhooks.AllowPrivate = true
	}
	fs := flag.NewFlagSet("holdfast "+cmd, flag.ContinueOnError)
	fs.Usage = func() {
		if c.Dev {
			fmt.Fprint(fs.Output(), devUsage)
		} else {
			fmt.Fprint(fs.Output(), serveUsage)
		}
		fs.PrintDefaults()
	}
	if c.Dev {
		fs.BoolVar(&c.Reset, "reset", false, "start over: delete the data directory's PostgreSQL, NATS files, receipt images and demo credentials first (no environment variable)")
	}
	if err := parseSettings(fs, settings(c), args, os.LookupEnv, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if !c.Dev && c.DatabaseURL == "" {
		return errors.New("serve needs DATABASE_URL (or --database-url); 'holdfast dev' starts a private PostgreSQL instead")
	}
	return nil
}

const devUsage = `Usage: holdfast dev [flags]

Serve the API for development on 127.0.0.1: a private PostgreSQL in the data directory
(unless DATABASE_URL is set), an embedded NATS with its client port open, and a demo
tenant with two accounts, whose API key and admin token are kept in the data directory
and printed with commands to try.

Each flag's environment variable sets it when the flag is not given; an empty variable
counts as unset, a malformed one stops the start.

Flags:
`

const serveUsage = `Usage: holdfast serve [flags]

Serve the API against DATABASE_URL, with an embedded NATS unless NATS_URL is set.

Each flag's environment variable sets it when the flag is not given; an empty variable
counts as unset, a malformed one stops the start.

Flags:
`
