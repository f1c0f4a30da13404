package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/postgres"
)

// startDev runs `holdfast dev` in-process in dataDir, as `make run` does but
// on free ports, and returns it with its banner.
func startDev(t *testing.T, dataDir string, configure ...func(*app.Config)) (*app.Main, string, error) {
	t.Helper()
	m := app.NewMain()
	m.Config.Dev, m.Config.DataDir, m.Config.Addr, m.Config.NATSListen = true, dataDir, "127.0.0.1:0", "127.0.0.1:0"
	var banner bytes.Buffer
	m.Stdout = &banner
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	for _, f := range configure {
		f(&m.Config)
	}
	err := m.Start(context.Background())
	if err != nil {
		m.Stop()
		return nil, "", err
	}
	return m, banner.String(), nil
}

func mustStartDev(t *testing.T, dataDir string, configure ...func(*app.Config)) (*app.Main, string) {
	t.Helper()
	m, banner, err := startDev(t, dataDir, configure...)
	if err != nil {
		t.Fatal(err)
	}
	return m, banner
}

// bannerLine returns the first line of the banner that matches re, and its
// first group; it fails t when none does.
func bannerLine(t *testing.T, banner, re string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)` + re).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("the banner has no line matching %s:\n%s", re, banner)
	}
	return m[1]
}

// tryIt returns the banner's "Try it" block: the lines to paste.
func tryIt(t *testing.T, banner string) string {
	t.Helper()
	_, block, ok := strings.Cut(banner, "Try it")
	if !ok {
		t.Fatalf("the banner has no Try it block:\n%s", banner)
	}
	_, block, _ = strings.Cut(block, "\n")
	block, _, _ = strings.Cut(block, "\n\n")
	return block
}

// sh runs script as pasted into a shell and returns its output.
func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%v running:\n%s\noutput:\n%s", err, script, out)
	}
	return string(out)
}

// TestDev_TheFirstHour follows a newcomer: `holdfast dev` prints a demo
// tenant, its API key and admin token, commands that work as pasted (a
// transfer, its replay, an export), a psql line and a DATABASE_URL that
// reach the private PostgreSQL, and a nats line that reaches the embedded
// server. A restart prints the same, and the same credentials still work;
// a second dev on the same directory is refused with the reason and the
// fix; --reset starts over.
func TestDev_TheFirstHour(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"sh", "curl", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the banner's lines cannot be run as pasted", tool)
		}
	}
	// A short path, so the PostgreSQL socket stays in the data directory
	// and the banner's lines are the same on every start.
	dir, err := os.MkdirTemp("", "hfdev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	first, banner1 := mustStartDev(t, dir)
	closed := false
	defer func() {
		if !closed {
			first.Stop()
		}
	}()
	key := bannerLine(t, banner1, `^\s+export KEY=(hf_\S+)$`)
	bannerLine(t, banner1, `^\s+admin token:\s+(hfadmin_\S+)$`)
	dbURL := bannerLine(t, banner1, `^\s+export DATABASE_URL='([^']+)'$`)
	psql := bannerLine(t, banner1, `^\s+(psql '[^']+')$`)
	natsURL := bannerLine(t, banner1, `^\s+nats --server (nats://\S+) stream info events$`)
	// The seed line names the measurement binary, which has the command.
	if seed := bannerLine(t, banner1, `^\s+(\S.*) seed --entries \d+`); !strings.HasSuffix(seed, "holdfast-lab") {
		t.Errorf("the banner's seed line runs %q, want holdfast-lab (the server binary has no seed command)", seed)
	}
	if !strings.Contains(banner1, "dev only") {
		t.Errorf("the banner does not say the kept credentials are for dev only:\n%s", banner1)
	}

	// The commands work as pasted: the transfer is made once, the replay
	// says so, the export has it.
	out := sh(t, tryIt(t, banner1))
	for _, want := range []string{`"amount":500`, "Idempotent-Replayed: true", "entry_id,transfer_id,time"} {
		if !strings.Contains(out, want) {
			t.Errorf("the Try it block's output lacks %q:\n%s", want, out)
		}
	}

	// psql and pgx (what holdfast-lab seed uses) reach the private cluster.
	if n := strings.TrimSpace(sh(t, psql+` -Atc "SELECT count(*) FROM tenants WHERE name = 'demo'"`)); n != "1" {
		t.Errorf("psql counts %s demo tenants, want 1", n)
	}
	db, err := postgres.Open(context.Background(), postgres.Config{URL: dbURL})
	if err != nil {
		t.Fatalf("DATABASE_URL from the banner: %v", err)
	}
	defer db.Close()

	// The nats CLI's line reaches the embedded server and its stream.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("%s from the banner: %v", natsURL, err)
	}
	js, _ := njs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = js.Stream(ctx, events.DefaultStream)
	cancel()
	nc.Close()
	if err != nil {
		t.Fatalf("stream info events at %s: %v", natsURL, err)
	}

	// A second dev on the same data directory: the reason and the fix only.
	if second, _, err := startDev(t, dir); err == nil {
		second.Stop()
		t.Error("a second dev on the same data directory started")
	} else if msg := err.Error(); !strings.Contains(msg, "another holdfast dev") || !strings.Contains(msg, "--data-dir") || strings.Contains(msg, "install") {
		t.Errorf("a second dev on the same data directory: %q; want the reason (another holdfast dev) and the fix (stop it, or --data-dir), no install hint", msg)
	}

	if fi, err := os.Stat(filepath.Join(dir, "dev.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dev.json: %v, mode %v; want a file of mode 0600", err, fi.Mode().Perm())
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	closed = true

	// A restart prints the same lines, with the same credentials, and
	// pasting them again replays the transfer instead of making another.
	restarted, banner2 := mustStartDev(t, dir)
	defer restarted.Stop()
	ports := regexp.MustCompile(`(http|nats)://127\.0\.0\.1:\d+`)
	if a, b := ports.ReplaceAllString(banner1, "$1://PORT"), ports.ReplaceAllString(banner2, "$1://PORT"); a != b {
		t.Errorf("the banner changed across a restart:\n%s\nthen:\n%s", a, b)
	}
	if out := sh(t, tryIt(t, banner2)); strings.Count(out, "Idempotent-Replayed: true") != 1 || !strings.Contains(out, `"amount":500`) {
		t.Errorf("after a restart, the Try it block:\n%s", out)
	}
	var tenants, transfers int
	if err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM tenants WHERE name = 'demo'), (SELECT count(*) FROM transfers)`).Scan(&tenants, &transfers); err != nil {
		t.Fatal(err)
	}
	if tenants != 1 || transfers != 1 {
		t.Errorf("after a restart and pasting twice: %d demo tenants, %d transfers; want 1 and 1", tenants, transfers)
	}
	db.Close()
	if err := restarted.Stop(); err != nil {
		t.Fatal(err)
	}

	// --reset starts over: a new database, a new key.
	reset, banner3 := mustStartDev(t, dir, func(c *app.Config) { c.Reset = true })
	defer reset.Stop()
	if k := bannerLine(t, banner3, `^\s+export KEY=(hf_\S+)$`); k == key {
		t.Errorf("--reset kept the API key %s", k)
	}
	if n := strings.TrimSpace(sh(t, psql+` -Atc "SELECT count(*) FROM transfers"`)); n != "0" {
		t.Errorf("after --reset, %s transfers, want 0", n)
	}
}
