package scenario

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	register(Scenario{
		Name: "export", Section: "Part 3, problem 1",
		Description: "a long account history to a slow client, buffered vs streamed: memory over time (reuses holdfast-lab bench export)",
		Run:         runExport,
	})
}

// rssSeries samples the process's RSS over time, and marks the moments
// progress lines were written.
type rssSeries struct {
	mu      sync.Mutex
	start   time.Time
	Samples []report.Point  `json:"samples"` // seconds, MiB
	Marks   []report.Marker `json:"marks"`
	out     io.Writer
	stop    chan struct{}
	done    chan struct{}
}

// startRSSSeries samples every interval until Stop; progress lines written
// to it are marked and passed on to out.
func startRSSSeries(interval time.Duration, out io.Writer) *rssSeries {
	s := &rssSeries{start: time.Now(), out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if n, err := load.RSS(); err == nil {
				s.mu.Lock()
				s.Samples = append(s.Samples, report.Point{X: time.Since(s.start).Seconds(), Y: float64(n) / (1 << 20)})
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Write marks each line at the current time.
func (s *rssSeries) Write(p []byte) (int, error) {
	s.mu.Lock()
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			s.Marks = append(s.Marks, report.Marker{X: time.Since(s.start).Seconds(), Label: line})
		}
	}
	s.mu.Unlock()
	if s.out != nil {
		return s.out.Write(p)
	}
	return len(p), nil
}

// Stop ends the sampling.
func (s *rssSeries) Stop() {
	close(s.stop)
	<-s.done
}

// exportScenarioConfig sizes the export scenario.
type exportScenarioConfig struct {
	Rows       int
	SlowRate   int64
	SlowFor    time.Duration
	Concurrent int
}

// exportScenario is what the export scenario measured: the benchmark's
// results and the RSS over the whole run.
type exportScenario struct {
	Bench *bench.ExportResult `json:"bench"`
	RSS   *rssSeries          `json:"rss_mib"`
}

// measureExport seeds an account of cfg.Rows entries on the database at
// url, served by Holdfast at holdfastURL, and runs bench.RunExport on it with a
// naive.BufferedExport beside, sampling RSS throughout.
func measureExport(ctx context.Context, url, holdfastURL string, cfg exportScenarioConfig, progress io.Writer) (*exportScenario, error) {
	psql, err := bench.Psql()
	if err != nil {
		return nil, fmt.Errorf("psql not found (install PostgreSQL's client): %w", err)
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 4, AcquireTimeout: harnessAcquire})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tenant, key, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab export"}, nil)
	if err != nil {
		return nil, err
	}
	account, err := postgres.NewAccountService(db).CreateAccount(ctx, tenant.ID, holdfast.AccountCreate{Currency: "USD"}, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "export: seeding %d entries\n", cfg.Rows)
	if err := bench.SeedEntries(ctx, db.Pool, tenant.ID, account.ID, cfg.Rows, nil); err != nil {
		return nil, err
	}
	transfers, err := bench.SeedAccounts(ctx, db.Pool, tenant.ID, "USD", 100, 1_000_000, false)
	if err != nil {
		return nil, err
	}
	if err := bench.Settle(ctx, db.Pool); err != nil {
		return nil, err
	}
	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer exports.Close()
	bufferedURL, stop, err := bench.ServeLoopback(&naive.BufferedExport{Exports: exports, Tenant: tenant.ID})
	if err != nil {
		return nil, err
	}
	defer stop()

	series := startRSSSeries(100*time.Millisecond, progress)
	bench, err := bench.RunExport(ctx, bench.ExportConfig{
		DatabaseURL: url, Psql: psql, Tenant: tenant.ID, Account: account.ID, Rows: int64(cfg.Rows),
		HoldfastURL: holdfastURL, APIKey: key.Secret, BufferedURL: bufferedURL,
		SlowRate: cfg.SlowRate, SlowFor: cfg.SlowFor, Concurrent: cfg.Concurrent, Transfers: transfers, Clients: cfg.Concurrent,
		Progress: series,
	})
	series.Stop()
	if err != nil {
		return nil, err
	}
	return &exportScenario{Bench: bench, RSS: series}, postgres.VerifyLedger(ctx, db, tenant.ID)
}

func runExport(ctx context.Context, env *Env) (*report.Report, error) {
	cfg := exportScenarioConfig{
		Rows:       pick(env.Scale, 50_000, 200_000, 2_000_000),
		SlowRate:   pick(env.Scale, int64(256<<10), int64(1<<20), int64(1<<20)),
		SlowFor:    pick(env.Scale, 300*time.Millisecond, 5*time.Second, 20*time.Second),
		Concurrent: pick(env.Scale, 2, 8, 16),
	}
	url, db, err := env.OpenDB(ctx, 2)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	base, err := env.Serve(ctx, url, ServeOptions{ExportSlots: cfg.Concurrent + 2})
	if err != nil {
		return nil, err
	}
	progress := env.Progress
	if progress == nil {
		progress = io.Discard
	}
	res, err := measureExport(ctx, url, base, cfg, progress)
	if err != nil {
		return nil, err
	}
	b := res.Bench
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	r := &report.Report{
		Claim: `A user requests a CSV export of their entire transaction history — 2 million rows. […] Postgres sends rows
faster than the HTTP socket can flush them to the client. Node.js buffers the difference in memory. Within 30
seconds, that single request has consumed 800MB of heap. A few concurrent exports later, the process is killed.`,
		Measured: fmt.Sprintf(`holdfast-lab bench export's harness (bench.RunExport), unchanged, on one account of %d entries:
a fast client (Holdfast vs psql \copy), then a slow client reading %s/s for %v and then as fast as it can —
Holdfast's streaming export, then a naive handler that builds the whole CSV in memory first
(naive.BufferedExport) — then %d slow exports at once, alone and beside a transfer load (and the load alone,
so that the exports' share shows apart from the transfers' heap under GOGC). Server and clients run in this
process; its RSS is sampled every 100 ms throughout (the chart; dashed lines mark each phase's start).`,
			cfg.Rows, mib(cfg.SlowRate), cfg.SlowFor, cfg.Concurrent),
		Columns:    []string{"export", "rows", "seconds", "peak RSS growth"},
		Data:       res,
		PostgreSQL: serverVersion(ctx, db.Pool),
	}
	for _, run := range []bench.ExportRun{b.SlowNaive, b.SlowHoldfast} {
		r.Rows = append(r.Rows, []string{run.Name + ", slow client", fmt.Sprint(run.Rows), fmt.Sprintf("%.2f", run.Elapsed.Seconds()), mib(run.RSSGrowth)})
	}
	r.Rows = append(r.Rows,
		[]string{fmt.Sprintf("%d holdfast exports at once, slow clients", cfg.Concurrent), fmt.Sprintf("%d streaming until cut", b.ExportsAloneOK),
			fmt.Sprintf("%.2f", cfg.SlowFor.Seconds()), mib(b.ExportsAloneMemory.RSS)},
		[]string{"transfers alone (no export)", "", fmt.Sprintf("%.2f", cfg.SlowFor.Seconds()), mib(b.TransfersAloneMemory.RSS)},
		[]string{fmt.Sprintf("%d holdfast exports at once beside the transfers", cfg.Concurrent), fmt.Sprintf("%d streaming until cut", b.ConcurrentOK),
			fmt.Sprintf("%.2f", cfg.SlowFor.Seconds()), mib(b.WithLoadMemory.RSS)})
	r.Findings = []string{
		fmt.Sprintf("slow client: the buffered export grew RSS by %s for %d rows, the streamed one by %s (%.0f×)",
			mib(b.SlowNaive.RSSGrowth), cfg.Rows, mib(b.SlowHoldfast.RSSGrowth), report.Ratio(float64(b.SlowNaive.RSSGrowth), float64(max(b.SlowHoldfast.RSSGrowth, 1)))),
		fmt.Sprintf("fast client: Holdfast %.0f rows/s, psql \\copy %.0f rows/s (%.2f)", b.FastHoldfast.RowsPerSecond(), b.FastPsql.RowsPerSecond(),
			report.Ratio(b.FastHoldfast.RowsPerSecond(), b.FastPsql.RowsPerSecond())),
		fmt.Sprintf("transfers alone: %d ok, %d not 201, p99 %s; with %d slow exports: %d ok, %d not 201, p99 %s",
			b.TransfersAlone.OK, b.TransfersAlone.Failed+b.TransfersAlone.Errors, msec(b.TransfersAlone.P99), cfg.Concurrent,
			b.WithLoad.OK, b.WithLoad.Failed+b.WithLoad.Errors, msec(b.WithLoad.P99)),
	}
	r.Chart = &report.Chart{Title: fmt.Sprintf("Export of %d rows: this process's memory over time", cfg.Rows), XLabel: "seconds", YLabel: "RSS, MiB",
		Series: []report.Series{{Name: "RSS (server and clients)", Points: res.RSS.Samples}}}
	for _, m := range res.RSS.Marks {
		label := m.Label
		if len(label) > 40 {
			label = label[:40] + "…"
		}
		r.Chart.Markers = append(r.Chart.Markers, report.Marker{X: m.X, Label: label})
	}
	return r, nil
}
