package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// buildHoldfast builds the server binary the soak runs as a child process.
func buildHoldfast(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holdfast")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/cmd/holdfast").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The soak in miniature: half a minute of mixed traffic against the real
// binary with its limits shrunk to a 15-second retention period, so the
// stream's age and the duplicate window turn over during the run. Every
// final check passes, every gauge was sampled, the files are written. The
// targets are figures of a long run and are not asserted.
func TestSoak_ShortRunPassesItsChecks(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	var progress bytes.Buffer
	res, err := Soak(context.Background(), SoakOptions{DatabaseURL: pgtest.ServerURL(), Holdfast: buildHoldfast(t),
		Duration: 30 * time.Second, Interval: 2 * time.Second, Rate: 20, ReceiptRate: 1, ExportEvery: 3 * time.Second,
		Retention: 15 * time.Second, Accounts: 50, Retry: 0.2, MaxDrain: time.Minute}, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check failed: %s: %s", c.Name, c.Detail)
		}
	}
	if len(res.Checks) != 6 || len(res.Targets) != 6 {
		t.Errorf("%d checks and %d targets, want 6 of each", len(res.Checks), len(res.Targets))
	}
	for _, want := range []string{"--events-replay-window=15s", "--events-duplicate-window=8s", "--idempotency-retention=15s"} {
		if !slices.Contains(res.Passed, want) {
			t.Errorf("limits passed %v, want %s among them", res.Passed, want)
		}
	}
	if len(res.Samples) < 10 {
		t.Fatalf("%d samples in 30s at 2s, want at least 10", len(res.Samples))
	}
	last := res.Samples[len(res.Samples)-1]
	if last.RSS == 0 || last.Heap == 0 || last.DB == 0 || last.NATS == 0 || last.Tables["idempotency_keys"] == 0 || last.Tables["entries"] == 0 {
		t.Errorf("a gauge was not read: %+v", last)
	}
	if len(last.Lag) < 2 || last.Traffic["transfers"].PerSec == 0 || last.Traffic["events"].PerSec == 0 {
		t.Errorf("lag of %d groups, traffic %+v; want the analytics and audit groups and traffic of every kind", len(last.Lag), last.Traffic)
	}
	if err := WriteSoak(out, res); err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(out, "samples.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(string(csv), "\n"); rows != len(res.Samples)+1 {
		t.Errorf("samples.csv has %d lines, want a header and %d samples", rows, len(res.Samples))
	}
	for _, name := range []string{"throughput", "p99", "memory", "storage", "backlog"} {
		if b, err := os.ReadFile(filepath.Join(out, name+".svg")); err != nil || !bytes.Contains(b, []byte("<polyline")) {
			t.Errorf("%s.svg: %v, or no line drawn", name, err)
		}
	}
	var printed bytes.Buffer
	PrintSoak(&printed, res)
	if !strings.Contains(printed.String(), "checks at the end") || !strings.Contains(printed.String(), "targets") {
		t.Errorf("PrintSoak printed:\n%s", printed.String())
	}
}

// Every shrunk limit reaches the server, which starts with them: a flag
// it did not have would stop it.
func TestSoakServer_PassesEveryShrunkLimit(t *testing.T) {
	t.Parallel()
	bin := buildHoldfast(t)
	srv, err := startSoakServer(context.Background(), bin, pgtest.NewDatabase(t), t.TempDir(), time.Minute, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	// The server started, so it took every flag it was given.
	for _, l := range soakLimits {
		if !slices.Contains(srv.passed, "--"+l.Flag+"="+l.Value(time.Minute)) {
			t.Errorf("--%s: not passed, passed %v", l.Flag, srv.passed)
		}
	}
	if _, err := srv.rss(); err != nil {
		t.Errorf("rss: %v", err)
	}
	if lags, err := srv.lags(context.Background()); err != nil || len(lags) == 0 {
		t.Errorf("lags: %v, %v", lags, err)
	}
}
