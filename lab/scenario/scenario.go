package scenario

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"

	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

// Scale is how big a scenario runs.
type Scale int

const (
	// Tiny is for the test suite: seconds, and still the right direction.
	Tiny Scale = iota
	// Small is the default of `holdfast-lab lab`: every scenario in minutes on 2 cores.
	Small
	// Full uses the seed's sizes.
	Full
)

// ParseScale returns the Scale named "tiny", "small" or "full".
func ParseScale(s string) (Scale, error) {
	switch s {
	case "tiny":
		return Tiny, nil
	case "small", "":
		return Small, nil
	case "full":
		return Full, nil
	}
	return 0, fmt.Errorf("scenario: unknown scale %q (want small or full)", s)
}

func (s Scale) String() string {
	return [...]string{"tiny", "small", "full"}[s]
}

// pick returns the value for the scale.
func pick[T any](s Scale, tiny, small, full T) T {
	switch s {
	case Tiny:
		return tiny
	case Full:
		return full
	}
	return small
}

// ServeOptions adjusts a Holdfast server started by Env.Serve.
type ServeOptions struct {
	ExportSlots int // concurrent exports, overall and per tenant; 0: the server's default
}

// Env is what a scenario runs against. The command fills it with a private
// PostgreSQL cluster and Holdfast servers on loopback; the tests with the
// test binary's database server. Everything it starts is stopped by
// whoever made it, after the scenario returns.
type Env struct {
	Scale    Scale
	Progress io.Writer // progress lines of long runs; never nil once normalised

	// NewDatabase returns the URL of a fresh, empty database (Holdfast's
	// migrations are not applied; OpenDB applies them).
	NewDatabase func(ctx context.Context) (string, error)
	// Serve runs a Holdfast server (HTTP API, group commit) on the
	// database and returns its base URL. Each call is a separate server
	// with its own pool and writer.
	Serve func(ctx context.Context, dbURL string, opts ServeOptions) (string, error)
	// Helper returns a command that runs RunHelper with args in a new
	// process of this program (holdfast-lab, or the test binary).
	Helper func(ctx context.Context, args ...string) *exec.Cmd
	// Spike runs `holdfast-lab bench receipts`' harness (capped workers in two
	// replicas, then the naive consumer) at the given size; nil where the
	// receipt pipeline cannot be started (this package's own tests).
	Spike func(ctx context.Context, cfg bench.SpikeConfig) (capped, naive *bench.SpikeResult, err error)
	// Webhooks runs `holdfast-lab bench webhooks`' runs with the options
	// (its database on the environment's server).
	Webhooks func(ctx context.Context, o bench.WebhooksOptions) ([]bench.WebhookRun, error)
}

// OpenDB makes a fresh database, applies Holdfast's migrations and opens a
// pool of maxConns on it that waits for connections as long as it must (a
// harness, not a request); it returns the database's URL and the pool.
func (e *Env) OpenDB(ctx context.Context, maxConns int32) (string, *postgres.DB, error) {
	url, err := e.NewDatabase(ctx)
	if err != nil {
		return "", nil, err
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: maxConns, AcquireTimeout: harnessAcquire})
	if err != nil {
		return "", nil, err
	}
	if err := postgres.Migrate(ctx, db); err != nil {
		db.Close()
		return "", nil, err
	}
	return url, db, nil
}

func (e *Env) progressf(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", args...)
	}
}

// Scenario is one scenario of the seed: the naive way beside Holdfast's.
type Scenario struct {
	Name        string // as typed on the command line
	Description string // one line
	Section     string // where in the seed
	// Run runs the scenario; nil: not yet available.
	Run func(ctx context.Context, env *Env) (*report.Report, error)
}

// Available reports whether the scenario can run.
func (s Scenario) Available() bool { return s.Run != nil }

// Heading names a report of the scenario run at scale, which took elapsed.
func (s Scenario) Heading(scale Scale, elapsed time.Duration) report.Heading {
	return report.Heading{Name: s.Name, Description: s.Description, Section: s.Section, Scale: scale.String(), Elapsed: elapsed}
}

var (
	registryMu sync.Mutex
	registry   []Scenario
)

// register adds a scenario to the registry; registering a name twice
// panics. Scenarios lists them in the seed's order.
func register(s Scenario) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, r := range registry {
		if r.Name == s.Name {
			panic("scenario: " + s.Name + " registered twice")
		}
	}
	registry = append(registry, s)
}

// Scenarios returns every registered scenario, available or not, in the
// seed's order.
func Scenarios() []Scenario {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Scenario, len(registry))
	copy(out, registry)
	order := map[string]int{}
	for i, n := range seedOrder {
		order[n] = i + 1
	}
	// Stable: known names in the seed's order, others after, as registered.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && rank(order, out[j].Name) < rank(order, out[j-1].Name); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func rank(order map[string]int, name string) int {
	if r, ok := order[name]; ok {
		return r
	}
	return len(order) + 1
}

// seedOrder is the order of issue 8's list.
var seedOrder = []string{"io", "cpu", "health", "unbounded", "race", "replicas", "double-charge", "export", "burst", "spike", "webhooks"}

// Lookup returns the scenario of that name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// harnessAcquire is the acquire timeout of the lab's own pools (seeding,
// checking, the naive ways): none but the caller's deadline, so that a busy
// machine slows a scenario down instead of failing it.
const harnessAcquire = -1

// msec formats a duration in milliseconds.
func msec(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

// msec1 formats a duration in milliseconds with one decimal.
func msec1(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
