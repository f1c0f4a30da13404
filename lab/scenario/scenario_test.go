package scenario

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

// helperEnv makes the test binary run a scenario's helper (RunHelper)
// with its arguments instead of the tests.
const helperEnv = "HOLDFAST_LAB_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" { // a scenario's helper process (see testEnv)
		os.Exit(helperMain())
	}
	pgtest.Main(m)
}

func helperMain() int {
	if err := RunHelper(context.Background(), os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testEnv runs scenarios at the tiny scale on the test binary's database
// server, with Holdfast served by apitest and helpers run by this binary.
func testEnv(t *testing.T) *Env {
	t.Helper()
	return &Env{
		Scale:    Tiny,
		Progress: testLog{t},
		NewDatabase: func(ctx context.Context) (string, error) {
			return pgtest.NewDatabase(t), nil
		},
		Serve: func(ctx context.Context, url string, opts ServeOptions) (string, error) {
			db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 8, AcquireTimeout: -1})
			if err != nil {
				return "", err
			}
			t.Cleanup(db.Close)
			if err := postgres.Migrate(ctx, db); err != nil {
				return "", err
			}
			srv := apitest.MustServe(t, db, func(c *holdfasthttp.Config) {
				if opts.ExportSlots > 0 {
					c.ExportSlots, c.ExportSlotsPerTenant = opts.ExportSlots, opts.ExportSlots
				}
			})
			return srv.URL(), nil
		},
		Webhooks: func(ctx context.Context, o bench.WebhooksOptions) ([]bench.WebhookRun, error) {
			o.DatabaseURL = pgtest.ServerURL()
			runs, _, err := bench.RunWebhooks(ctx, o, testLog{t})
			return runs, err
		},
		Helper: func(ctx context.Context, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Env = append(os.Environ(), helperEnv+"=1")
			return cmd
		},
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// mustRun runs the scenario at the tiny scale and writes its report to a
// temporary directory, checking the files.
func mustRun(t *testing.T, name string) *report.Report {
	t.Helper()
	s, ok := Lookup(name)
	if !ok || !s.Available() {
		t.Fatalf("scenario %q not available", name)
	}
	r, err := s.Run(t.Context(), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := report.Write(dir, s.Heading(Tiny, 0), r, report.ThisMachine()); err != nil {
		t.Fatal(err)
	}
	mustValidReport(t, dir)
	return r
}

// mustValidReport checks report.md, chart.svg (well-formed XML) and
// data.json (valid JSON) in dir.
func mustValidReport(t *testing.T, dir string) {
	t.Helper()
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"> ", "## Measured here", "## Machine", "GOMAXPROCS", "| --- |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart.svg is not well-formed: %v", err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("data.json is not JSON")
	}
}

func TestRegistry(t *testing.T) {
	var available, planned []string
	for _, s := range Scenarios() {
		if s.Description == "" || s.Section == "" {
			t.Errorf("scenario %q lacks a description or section", s.Name)
		}
		if s.Available() {
			available = append(available, s.Name)
		} else {
			planned = append(planned, s.Name)
		}
	}
	var built []string // spike, still being built, may come anywhere
	for _, name := range available {
		if name != "spike" {
			built = append(built, name)
		}
	}
	if got, want := strings.Join(built, " "), "io cpu health unbounded race replicas double-charge export burst webhooks"; got != want {
		t.Errorf("available scenarios %q, want %q in that order", got, want)
	}
	for _, name := range planned {
		if name != "spike" {
			t.Errorf("scenario %q is not available", name)
		}
	}
}

func TestScenarioIO(t *testing.T) {
	t.Parallel()
	runs := mustRun(t, "io").Data.([]ioRun)
	for _, r := range runs {
		if r.OK != r.Calls {
			t.Errorf("%s: %d of %d calls answered", r.Name, r.OK, r.Calls)
		}
	}
	if runs[0].MaxInFlight != 1 || runs[1].MaxInFlight > 20 || runs[2].MaxInFlight <= 20 {
		t.Errorf("most calls in flight: sequential %d (want 1), bounded %d (want ≤ 20), unbounded %d (want > 20)",
			runs[0].MaxInFlight, runs[1].MaxInFlight, runs[2].MaxInFlight)
	}
}

func TestScenarioCPU(t *testing.T) {
	t.Parallel()
	runs := mustRun(t, "cpu").Data.([]cpuRun)
	for _, r := range runs[1:] {
		if r.Checksum != runs[0].Checksum {
			t.Errorf("%s: checksum %x, sequential %x: not the same work", r.Mode, r.Checksum, runs[0].Checksum)
		}
	}
	if runs[1].GOMAXPROCS != 1 {
		t.Errorf("concurrent ran with GOMAXPROCS %d, want 1", runs[1].GOMAXPROCS)
	}
}

func TestScenarioUnbounded(t *testing.T) {
	t.Parallel()
	runs := mustRun(t, "unbounded").Data.([]queryStorm)
	naive, bounded := runs[0], runs[1]
	if naive.TimedOut+naive.Errors == 0 {
		t.Errorf("all at once: no query failed (%+v); the pool should have run out", naive)
	}
	if bounded.TimedOut+bounded.Errors != 0 || bounded.OK != int64(bounded.Queries) {
		t.Errorf("bounded: %+v, want every query to succeed", bounded)
	}
}

func TestScenarioRace(t *testing.T) {
	t.Parallel()
	runs := mustRun(t, "race").Data.(map[string]any)["runs"].([]raceRun)
	if runs[0].MoneyDelta == 0 {
		t.Errorf("naive read-modify-write conserved money (%+v); its lost updates should not", runs[0])
	}
	for _, r := range runs[1:] {
		if !r.Correct() || r.Moved == 0 {
			t.Errorf("%s: %+v, want money conserved, no negative balance, no error", r.Name, r)
		}
	}
	if last := runs[len(runs)-1]; !strings.Contains(last.Name, "Holdfast") {
		t.Errorf("last run %q, want Holdfast's", last.Name)
	}
}

func TestScenarioReplicas(t *testing.T) {
	t.Parallel()
	runs := mustRun(t, "replicas").Data.([]replicaRun)
	if r := runs[0]; r.MoneyDelta != 0 || r.Errors != 0 {
		t.Errorf("one naive process: %+v, want money conserved", r)
	}
	if r := runs[1]; r.MoneyDelta == 0 {
		t.Errorf("two naive processes: %+v, want lost updates", r)
	}
	if r := runs[2]; r.MoneyDelta != 0 || r.Negative != 0 || r.Errors != 0 || r.Moved == 0 {
		t.Errorf("two Holdfast servers: %+v, want money conserved", r)
	}
}

func TestScenarioDoubleCharge(t *testing.T) {
	t.Parallel()
	res := mustRun(t, "double-charge").Data.(*doubleCharge)
	naive, keyed := res.Runs[0], res.Runs[1]
	if naive.Stored <= int64(naive.Charges) || naive.ChargedTwice == 0 {
		t.Errorf("without a key: %+v, want charges stored twice", naive)
	}
	if keyed.Stored != int64(keyed.Charges) || keyed.ChargedTwice != 0 || keyed.Succeeded != int64(keyed.Charges) {
		t.Errorf("with a key: %+v, want each charge stored exactly once and seen to succeed", keyed)
	}
	if keyed.Replayed != int64(keyed.Charges) {
		t.Errorf("with a key: %d replays, want one per charge (every first response was lost)", keyed.Replayed)
	}
	for _, d := range res.Duplicates {
		if d.Created != 1 {
			t.Errorf("%s: a burst of %d with one key created %d, want 1", d.Route, d.Sent, d.Created)
		}
		for status := range d.Statuses {
			// Transfers: a duplicate waits for the first's batch and is
			// replayed (docs/decisions/0003-transfer-keys-claimed-inside-the-batch.md); accounts: 409 while in flight.
			if status != 201 && !(status == 409 && d.Route == "POST /v1/accounts") {
				t.Errorf("%s: status %d in a burst: %v", d.Route, status, d.Statuses)
			}
		}
	}
}

// TestScenarioExport is not parallel: it measures this process's memory.
func TestScenarioExport(t *testing.T) {
	if _, err := bench.Psql(); err != nil {
		t.Skip("no psql:", err)
	}
	res := mustRun(t, "export").Data.(*exportScenario)
	b := res.Bench
	if b.SlowNaive.RSSGrowth <= b.SlowHoldfast.RSSGrowth {
		t.Errorf("RSS growth: buffered %d, streamed %d; want the buffered export's larger", b.SlowNaive.RSSGrowth, b.SlowHoldfast.RSSGrowth)
	}
	if len(res.RSS.Samples) == 0 || len(res.RSS.Marks) == 0 {
		t.Errorf("%d RSS samples, %d phase marks; want some of each", len(res.RSS.Samples), len(res.RSS.Marks))
	}
}
