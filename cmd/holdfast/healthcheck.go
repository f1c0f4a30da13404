package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck asks a replica's health or readiness endpoint and fails
// unless it answers 200 in time: the container image is FROM scratch, with
// no shell or curl for a container runtime's health check to call.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast healthcheck", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "endpoint to ask: /healthz (alive) or /readyz (ready for traffic)")
	timeout := fs.Duration("timeout", 2*time.Second, "longest wait for the answer")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: holdfast healthcheck [flags]\n\nAsk a replica's /healthz or /readyz; exit 0 on a 200 answer, 1 otherwise\n(for container health checks: the image has no shell or curl).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *url, resp.Status)
	}
	return nil
}
