package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/holdfast/holdfast/app"
)

// runAdoptStream binds the database's event log to the streams on a NATS
// server, knowingly: the way back into service after the stream was lost.
func runAdoptStream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast adopt-stream", flag.ContinueOnError)
	m := app.NewMain()
	c := &m.Config
	c.DataDir = cmp.Or(os.Getenv("HOLDFAST_DATA_DIR"), c.DataDir)
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.StringVar(&c.NATSURL, "nats-url", os.Getenv("NATS_URL"), "the NATS whose streams to adopt (env NATS_URL); empty: the embedded server's files in --data-dir")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory of the embedded NATS, without --nats-url (env HOLDFAST_DATA_DIR)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast adopt-stream [flags]

Bind the database's event log to the streams on this NATS ("events", and
"jobs" of the receipt pipeline), creating those that are missing. A replica
refuses to start on a stream that is not the one the database recorded:
consumer progress is counted in stream sequences, and a stream that replaced
the recorded one (another NATS server, a lost data directory) numbers its
messages from 1 again. If the original stream is gone for good, adopt the
new one: its identity is recorded and the consumer groups' progress in it is
reset, so they apply every event it holds. Events of the old stream that
were not yet consumed are lost, and jobs in it are not run. Stop every
replica first; run it with the --nats-url (or --data-dir) the replicas will
use. A stream bound already is left as it is.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.DatabaseURL == "" {
		return errors.New("adopt-stream needs DATABASE_URL (or --database-url)")
	}
	return app.AdoptStreams(ctx, *c, stdout)
}
