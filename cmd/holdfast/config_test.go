package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
)

// TestParseFlags_BadEnvironmentRefusesToStart: a value of the wrong type in
// an environment variable stops serve and dev before anything starts, with
// an error naming the variable, instead of falling back to the default.
// One variable of each type, and the ones whose values are checked further.
func TestParseFlags_BadEnvironmentRefusesToStart(t *testing.T) {
	for _, bad := range []struct{ env, value string }{
		{"HOLDFAST_ADMISSION", "flase"},                       // bool
		{"HOLDFAST_REQUEST_TIMEOUT", "30"},                    // duration without a unit
		{"HOLDFAST_MAX_BATCH", "ten"},                         // int
		{"HOLDFAST_BODY_LIMIT", "1MiB"},                       // int64
		{"HOLDFAST_EVENTS_MAX_BYTES", "99999999999999999999"}, // int64 out of range
		{"HOLDFAST_RATE_LIMIT", "fast"},                       // float
		{"HOLDFAST_LOG_LEVEL", "verbose"},                     // one of four words
		{"HOLDFAST_ADDR", "localhost"},                        // host:port
		{"HOLDFAST_NATS_LISTEN", "127.0.0.1:port"},            // host:port
	} {
		t.Run(bad.env, func(t *testing.T) {
			t.Setenv(bad.env, bad.value)
			for _, cmd := range []string{"serve", "dev"} {
				m := app.NewMain()
				err := parseServe(cmd, []string{"--database-url", "postgres://x"}, &m.Config, m.Stdout, io.Discard)
				if err == nil || !strings.Contains(err.Error(), bad.env) {
					t.Errorf("%s with %s=%q: %v, want an error naming %s", cmd, bad.env, bad.value, err, bad.env)
				}
			}
		})
	}
}

// TestParseFlags_EveryBadEnvironmentValueIsNamed: the same for every row of
// the table whose type can be malformed.
func TestParseFlags_EveryBadEnvironmentValueIsNamed(t *testing.T) {
	var c app.Config
	n := 0
	for _, s := range settings(&c) {
		bad := badValue(s.value)
		if bad == "" {
			continue
		}
		n++
		t.Run(s.env, func(t *testing.T) {
			t.Setenv(s.env, bad)
			m := app.NewMain()
			err := parseServe("serve", []string{"--database-url", "postgres://x"}, &m.Config, m.Stdout, io.Discard)
			if err == nil || !strings.Contains(err.Error(), s.env) || !strings.Contains(err.Error(), "--"+s.flag) {
				t.Errorf("%s=%q: %v, want an error naming %s and --%s", s.env, bad, err, s.env, s.flag)
			}
		})
	}
	if n < 40 {
		t.Fatalf("only %d settings with a typed value; has the table changed shape?", n)
	}
}

// badValue returns a value that the setting's type refuses; "" for free text.
func badValue(v any) string {
	switch v.(type) {
	case *bool:
		return "flase"
	case *time.Duration:
		return "30"
	case *int, *int64:
		return "1.5"
	case *float64:
		return "lots"
	case *logLevel, *listenAddr:
		return "no such thing"
	}
	return ""
}

// TestParseFlags_FlagWinsOverEnvironment: the environment sets a value, a
// flag on the command line overrides it.
func TestParseFlags_FlagWinsOverEnvironment(t *testing.T) {
	t.Setenv("HOLDFAST_MAX_BATCH", "10")
	t.Setenv("HOLDFAST_ADMISSION", "false")
	t.Setenv("DATABASE_URL", "postgres://from-env")
	m := app.NewMain()
	if err := parseServe("serve", nil, &m.Config, m.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c := m.Config; c.MaxBatch != 10 || c.Admission || c.DatabaseURL != "postgres://from-env" {
		t.Fatalf("from the environment: max batch %d, admission %v, database %q; want 10, false, postgres://from-env", c.MaxBatch, c.Admission, c.DatabaseURL)
	}
	m = app.NewMain()
	if err := parseServe("serve", []string{"--max-batch", "20", "--admission", "--database-url", "postgres://from-flag"}, &m.Config, m.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c := m.Config; c.MaxBatch != 20 || !c.Admission || c.DatabaseURL != "postgres://from-flag" {
		t.Fatalf("with flags: max batch %d, admission %v, database %q; want the flags' 20, true, postgres://from-flag", c.MaxBatch, c.Admission, c.DatabaseURL)
	}
}

// TestParseFlags_HelpListsEveryFlagWithItsEnvironmentVariable: serve's and
// dev's --help name each flag of the table with its variable.
func TestParseFlags_HelpListsEveryFlagWithItsEnvironmentVariable(t *testing.T) {
	var c app.Config
	for _, cmd := range []string{"serve", "dev"} {
		var stdout bytes.Buffer
		m := app.NewMain()
		m.Stdout = &stdout
		if err := parseServe(cmd, []string{"--help"}, &m.Config, m.Stdout, io.Discard); exitCode(err, io.Discard) != 0 {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := stdout.String()
		for _, s := range settings(&c) {
			i := strings.Index(help, "\n  -"+s.flag+" ")
			if i < 0 {
				i = strings.Index(help, "\n  -"+s.flag+"\n")
			}
			if i < 0 {
				t.Errorf("%s --help lacks -%s", cmd, s.flag)
				continue
			}
			entry, _, _ := strings.Cut(help[i+1:], "\n  -")
			if !strings.Contains(entry, "(env "+s.env+")") {
				t.Errorf("%s --help: -%s does not name %s: %q", cmd, s.flag, s.env, entry)
			}
		}
	}
}

// TestParseFlags_DevListensOnLoopback: dev, which prints an admin token,
// serves on 127.0.0.1 and opens the NATS client port there; serve keeps
// :8080 and no NATS port unless asked.
func TestParseFlags_DevListensOnLoopback(t *testing.T) {
	dev, serve := app.NewMain(), app.NewMain()
	if err := parseServe("dev", nil, &dev.Config, dev.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := parseServe("serve", []string{"--database-url", "postgres://x"}, &serve.Config, serve.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if dev.Config.Addr != "127.0.0.1:8080" || dev.Config.NATSListen != "127.0.0.1:4223" {
		t.Errorf("dev: addr %q, NATS listen %q; want 127.0.0.1:8080 and 127.0.0.1:4223", dev.Config.Addr, dev.Config.NATSListen)
	}
	if serve.Config.Addr != ":8080" || serve.Config.NATSListen != "" {
		t.Errorf("serve: addr %q, NATS listen %q; want :8080 and none", serve.Config.Addr, serve.Config.NATSListen)
	}
}

// TestParseFlags_BarePortListensOnLoopback: --nats-listen 4223 (and --addr
// 8081) mean loopback; a host or ":port" is taken as given.
func TestParseFlags_BarePortListensOnLoopback(t *testing.T) {
	m := app.NewMain()
	if err := parseServe("serve", []string{"--database-url", "postgres://x", "--nats-listen", "4223", "--addr", "8081"}, &m.Config, m.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Config.NATSListen != "127.0.0.1:4223" || m.Config.Addr != "127.0.0.1:8081" {
		t.Errorf("NATS listen %q, addr %q; want 127.0.0.1:4223 and 127.0.0.1:8081", m.Config.NATSListen, m.Config.Addr)
	}
	m = app.NewMain()
	if err := parseServe("serve", []string{"--database-url", "postgres://x", "--nats-listen", ":4223"}, &m.Config, m.Stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Config.NATSListen != ":4223" {
		t.Errorf("NATS listen %q, want :4223 as given", m.Config.NATSListen)
	}
}

func TestParseFlags_Overload(t *testing.T) {
	t.Parallel()
	m := app.NewMain()
	err := parseServe("serve", []string{"--database-url", "postgres://x", "--admission=false", "--cpu-lane-size", "3",
		"--db-acquire-timeout", "250ms", "--rate-limit", "50", "--rate-limit-burst", "100", "--redis-url", "redis://127.0.0.1:6379/0"}, &m.Config, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.Admission || c.CPULaneSize != 3 || c.DBAcquireTimeout != 250*time.Millisecond || c.RateLimit != 50 || c.RateLimitBurst != 100 || c.RedisURL == "" {
		t.Fatalf("parsed %+v", c)
	}
	d := app.NewMain().Config
	if !d.Admission || d.RateLimit != 1000 || d.DBAcquireTimeout != time.Second || d.LedgerMaxWait != 60*time.Millisecond {
		t.Fatalf("defaults %+v: want admission on, 1000/s per key, 1s acquire timeout, 60ms ledger max wait", d)
	}
}

func TestParseFlags_EventDuplicateWindow(t *testing.T) {
	t.Parallel()
	if d := app.NewMain().Config.Events.Duplicates; d != 2*time.Minute {
		t.Fatalf("default duplicate window %v, want 2m", d)
	}
	m := app.NewMain()
	if err := parseServe("serve", []string{"--database-url", "postgres://x", "--events-duplicate-window", "5m"}, &m.Config, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if d := m.Config.Events.Duplicates; d != 5*time.Minute {
		t.Fatalf("--events-duplicate-window 5m parsed as %v", d)
	}
}

func TestParseFlags_MetricsAddr(t *testing.T) {
	m := app.NewMain()
	if err := parseServe("serve", []string{"--database-url", "postgres://x", "--metrics-addr", "127.0.0.1:9464"}, &m.Config, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Config.MetricsAddr != "127.0.0.1:9464" || app.NewMain().Config.MetricsAddr != "" {
		t.Fatalf("--metrics-addr parsed as %q, default %q", m.Config.MetricsAddr, app.NewMain().Config.MetricsAddr)
	}
}

func TestParseFlags_ReceiptQuota(t *testing.T) {
	if q := app.NewMain().Config.Receipts.QuotaMiB; q != 10<<10 {
		t.Fatalf("default receipt quota %d MiB, want 10 GiB", q)
	}
	m := app.NewMain()
	if err := parseServe("serve", []string{"--database-url", "postgres://x", "--receipt-quota-mib", "512"}, &m.Config, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if q := m.Config.Receipts.QuotaMiB; q != 512 {
		t.Fatalf("--receipt-quota-mib 512 parsed as %d", q)
	}
}
