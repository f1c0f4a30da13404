package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/export"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/postgres"
)

// BufferedExport is the naive export the benchmark measures Holdfast's
// against: GET /v1/accounts/{id}/transactions.csv of Tenant runs the same
// query through the same CSV encoder, but into a bytes.Buffer, and writes
// the whole file once it is built. Memory grows with the account's history
// (and with every concurrent export); a slow client holds it all. There is
// no authentication: it serves one tenant, for benchmarks only.
type BufferedExport struct {
	Exports *postgres.ExportService // its own, with its own small pool
	Tenant  string
}

func (b *BufferedExport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/accounts/")
	id, csv := strings.CutSuffix(id, "/transactions.csv")
	if !ok || !csv || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	enc := export.NewCSVEncoder(&buf)
	if err := enc.WriteHeader(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	err := b.Exports.ExportEntries(r.Context(), b.Tenant, id, export.Query{}, enc.Encode)
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// RSS returns the process's resident set size in bytes (VmRSS of
// /proc/self/status; Linux only).
func RSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("lab: no VmRSS in /proc/self/status")
}

// RSSGrowth measures how far the process's RSS rises above its baseline
// while something runs: StartRSSGrowth collects garbage, returns memory to
// the OS, takes the baseline and samples every interval; Stop returns the
// peak growth in bytes.
type RSSGrowth struct {
	base, peak atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

// StartRSSGrowth starts sampling; see RSSGrowth.
func StartRSSGrowth(interval time.Duration) (*RSSGrowth, error) {
	runtime.GC()
	debug.FreeOSMemory()
	base, err := RSS()
	if err != nil {
		return nil, err
	}
	g := &RSSGrowth{stop: make(chan struct{}), done: make(chan struct{})}
	g.base.Store(base)
	g.peak.Store(base)
	go func() {
		defer close(g.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			g.sample()
			select {
			case <-g.stop:
				g.sample()
				return
			case <-t.C:
			}
		}
	}()
	return g, nil
}

func (g *RSSGrowth) sample() {
	if n, err := RSS(); err == nil && n > g.peak.Load() {
		g.peak.Store(n)
	}
}

// Stop ends the sampling and returns the peak growth over the baseline.
func (g *RSSGrowth) Stop() int64 {
	close(g.stop)
	<-g.done
	return g.peak.Load() - g.base.Load()
}

// Psql returns the path of the psql client: beside the PostgreSQL server
// binaries pglocal uses, else on PATH.
func Psql() (string, error) {
	if dir, err := pglocal.FindBinDir(); err == nil {
		if p := filepath.Join(dir, "psql"); exec.Command(p, "--version").Run() == nil {
			return p, nil
		}
	}
	return exec.LookPath("psql")
}

// PsqlCopy is the psql meta-command that writes the same rows as an export
// of the tenant's account (postgres.ExportQuery), as CSV to stdout.
func PsqlCopy(tenant, account string) string {
	q := strings.NewReplacer("$1", "'"+tenant+"'::uuid", "$2", "'"+account+"'::uuid", "$3", "0",
		"$4", "NULL", "$5", "NULL").Replace(postgres.ExportQuery)
	return `\copy (` + strings.Join(strings.Fields(q), " ") + `) to stdout with (format csv)`
}

// ExportBenchConfig configures the export benchmark: one account with a long
// history, served by Holdfast and by a BufferedExport, read by psql too.
type ExportBenchConfig struct {
	DatabaseURL string // for psql (a libpq URI)
	Psql        string // psql's path; default Psql()
	Tenant      string
	Account     string // the account exported, with Rows entries
	Rows        int64
	HoldfastURL string
	APIKey      string // the tenant's, for Holdfast
	BufferedURL string // a BufferedExport of the tenant

	SlowRate    int64         // bytes per second of a slow client; default 1 MiB
	SlowFor     time.Duration // how long a slow client reads slowly; default 20s
	Concurrent  int           // slow exports at once in part (c); default 16
	Transfers   []string      // accounts of the tenant the transfer load moves money between (≥ 2, funded)
	Clients     int           // closed-loop transfer clients; default 16
	RSSInterval time.Duration // default 100ms
	Progress    io.Writer     // progress lines; nil for none
}

func (c ExportBenchConfig) withDefaults() ExportBenchConfig {
	if c.SlowRate == 0 {
		c.SlowRate = 1 << 20
	}
	if c.SlowFor == 0 {
		c.SlowFor = 20 * time.Second
	}
	if c.Concurrent == 0 {
		c.Concurrent = 16
	}
	if c.Clients == 0 {
		c.Clients = 16
	}
	if c.RSSInterval == 0 {
		c.RSSInterval = 100 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// ExportRun is one read of an export.
type ExportRun struct {
	Name      string
	Rows      int64 // data rows received (header excluded)
	Bytes     int64
	Elapsed   time.Duration
	RSSGrowth int64 // peak RSS growth of this process during the run, bytes; 0 if not measured
}

// RowsPerSecond and MBPerSecond are the run's rates.
func (r ExportRun) RowsPerSecond() float64 { return float64(r.Rows) / r.Elapsed.Seconds() }
func (r ExportRun) MBPerSecond() float64   { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// ExportBench is what BenchExport measured.
type ExportBench struct {
	Config                   ExportBenchConfig
	FastHoldfast, FastPsql   ExportRun // (a) whole file, read as fast as possible
	SlowHoldfast, SlowNaive  ExportRun // (b) slow client, with RSS growth
	ConcurrentRSSGrowth      int64     // (c) peak RSS growth, bytes
	ConcurrentOK             int       // (c) exports that were answered 200 and streamed until cut
	TransfersAlone, WithLoad Result    // (c) transfer closed loop without and with the exports
}

// BenchExport runs the export benchmark's three parts one after the other.
func BenchExport(ctx context.Context, cfg ExportBenchConfig) (*ExportBench, error) {
	cfg = cfg.withDefaults()
	if cfg.Psql == "" {
		p, err := Psql()
		if err != nil {
			return nil, fmt.Errorf("psql not found: %w", err)
		}
		cfg.Psql = p
	}
	if len(cfg.Transfers) < 2 {
		return nil, errors.New("lab: BenchExport needs at least 2 transfer accounts")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrent + cfg.Clients + 4}}
	defer client.CloseIdleConnections()
	res := &ExportBench{Config: cfg}
	holdfast := cfg.HoldfastURL + "/v1/accounts/" + cfg.Account + "/transactions.csv"
	naive := cfg.BufferedURL + "/v1/accounts/" + cfg.Account + "/transactions.csv"
	var err error

	// A first read, not measured, so that neither measured one pays for a
	// cold cache.
	fmt.Fprintf(cfg.Progress, "(a) warming the cache: psql \\copy, not measured\n")
	if _, err = runPsql(ctx, cfg); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "(a) fast client: holdfast, %d rows\n", cfg.Rows)
	if res.FastHoldfast, err = readExport(ctx, client, "holdfast GET .csv", holdfast, cfg.APIKey, 0, 0, cfg.RSSInterval); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "(a) fast client: psql \\copy\n")
	if res.FastPsql, err = runPsql(ctx, cfg); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "(b) slow client: holdfast, %v at %d B/s, then fast\n", cfg.SlowFor, cfg.SlowRate)
	if res.SlowHoldfast, err = readExport(ctx, client, "holdfast streaming", holdfast, cfg.APIKey, cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "(b) slow client: naive buffered\n")
	if res.SlowNaive, err = readExport(ctx, client, "naive buffered", naive, "", cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
		return nil, err
	}
	for _, r := range []ExportRun{res.FastHoldfast, res.FastPsql, res.SlowHoldfast, res.SlowNaive} {
		if r.Rows != cfg.Rows {
			return nil, fmt.Errorf("%s: %d rows, want %d", r.Name, r.Rows, cfg.Rows)
		}
	}

	pick := func(rng *rand.Rand) (string, string) {
		i := rng.IntN(len(cfg.Transfers))
		j := (i + 1 + rng.IntN(len(cfg.Transfers)-1)) % len(cfg.Transfers)
		return cfg.Transfers[i], cfg.Transfers[j]
	}
	poster, err := NewPoster(cfg.HoldfastURL, cfg.Clients, time.Minute)
	if err != nil {
		return nil, err
	}
	defer poster.Close()
	fmt.Fprintf(cfg.Progress, "(c) transfers alone: %d clients, %v\n", cfg.Clients, cfg.SlowFor)
	res.TransfersAlone = ClosedLoop(ctx, "transfers alone", cfg.Clients, cfg.SlowFor, TransferCall(poster, cfg.APIKey, 1, pick))
	fmt.Fprintf(cfg.Progress, "(c) transfers with %d slow exports\n", cfg.Concurrent)
	res.ConcurrentRSSGrowth, res.ConcurrentOK, res.WithLoad, err = concurrentExports(ctx, client, cfg, holdfast,
		func() Result {
			return ClosedLoop(ctx, fmt.Sprintf("transfers + %d exports", cfg.Concurrent), cfg.Clients, cfg.SlowFor,
				TransferCall(poster, cfg.APIKey, 2, pick))
		})
	return res, err
}

// concurrentExports starts cfg.Concurrent slow exports, runs load once all
// are streaming, then disconnects them; it returns the peak RSS growth, how
// many exports streamed until cut, and load's result.
func concurrentExports(ctx context.Context, client *http.Client, cfg ExportBenchConfig, url string, load func() Result) (int64, int, Result, error) {
	growth, err := StartRSSGrowth(cfg.RSSInterval)
	if err != nil {
		return 0, 0, Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var started sync.WaitGroup
	var ok atomic.Int64
	for range cfg.Concurrent {
		started.Add(1)
		wg.Go(func() {
			resp, err := get(ctx, client, url, cfg.APIKey)
			started.Done()
			if err != nil {
				return
			}
			defer resp.Body.Close()
			_, _, err = readPaced(ctx, resp.Body, cfg.SlowRate, time.Hour)
			if resp.StatusCode == http.StatusOK && errors.Is(err, context.Canceled) {
				ok.Add(1)
			}
		})
	}
	started.Wait()
	result := load()
	cancel()
	wg.Wait()
	return growth.Stop(), int(ok.Load()), result, nil
}

func get(ctx context.Context, client *http.Client, url, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return client.Do(req)
}

// readExport GETs an export and reads it all: at rate bytes/s for slowFor
// first (no pacing if rate is 0), then as fast as possible; it measures
// the process's RSS growth meanwhile.
func readExport(ctx context.Context, client *http.Client, name, url, key string, rate int64, slowFor, interval time.Duration) (ExportRun, error) {
	run := ExportRun{Name: name}
	growth, err := StartRSSGrowth(interval)
	if err != nil {
		return run, err
	}
	start := time.Now()
	resp, err := get(ctx, client, url, key)
	if err != nil {
		growth.Stop()
		return run, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		growth.Stop()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return run, fmt.Errorf("%s: %s: %s", name, resp.Status, b)
	}
	var lines int64
	if rate > 0 {
		run.Bytes, lines, err = readPaced(ctx, resp.Body, rate, slowFor)
	}
	if err == nil {
		lc := &lineCounter{}
		_, err = io.Copy(lc, resp.Body)
		run.Bytes, lines = run.Bytes+lc.bytes, lines+lc.lines
	}
	run.Elapsed = time.Since(start)
	run.RSSGrowth = growth.Stop()
	run.Rows = lines - 1 // the header
	return run, err
}

// readPaced reads r at rate bytes per second until slowFor has passed, r
// ends (io.EOF is not an error) or ctx ends, and counts bytes and lines.
func readPaced(ctx context.Context, r io.Reader, rate int64, slowFor time.Duration) (n, lines int64, err error) {
	buf := make([]byte, 16<<10)
	start := time.Now()
	for time.Since(start) < slowFor {
		if err := ctx.Err(); err != nil {
			return n, lines, err
		}
		k, err := r.Read(buf)
		n += int64(k)
		lines += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, lines, nil
		}
		if err != nil {
			return n, lines, err
		}
		due := start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
			return n, lines, ctx.Err()
		}
	}
	return n, lines, nil
}

// lineCounter is an io.Writer that counts bytes and newlines.
type lineCounter struct{ bytes, lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.bytes += int64(len(p))
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// runPsql runs psql's \copy of the same query with its output discarded
// (counted).
func runPsql(ctx context.Context, cfg ExportBenchConfig) (ExportRun, error) {
	run := ExportRun{Name: `psql \copy csv`}
	lc := &lineCounter{}
	cmd := exec.CommandContext(ctx, cfg.Psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cfg.DatabaseURL, "-c", PsqlCopy(cfg.Tenant, cfg.Account))
	cmd.Stdout = lc
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return run, fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	run.Elapsed = time.Since(start)
	run.Bytes, run.Rows = lc.bytes, lc.lines
	return run, nil
}

// PrintExport writes the benchmark's results as side-by-side tables with
// their ratios and targets.
func PrintExport(w io.Writer, r *ExportBench) {
	c := r.Config
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\n(a) fast client: one account of %d entries, read whole as fast as possible\n", c.Rows)
	fmt.Fprintln(tw, "\trows\tMB\tseconds\trows/s\tMB/s\t")
	for _, run := range []ExportRun{r.FastHoldfast, r.FastPsql} {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.0f\t%.1f\t\n", run.Name, run.Rows, float64(run.Bytes)/1e6, run.Elapsed.Seconds(), run.RowsPerSecond(), run.MBPerSecond())
	}
	tw.Flush()
	fmt.Fprintf(w, "holdfast / psql (rows/s): %.2f  (target ≥ 0.80)\n", ratio(r.FastHoldfast.RowsPerSecond(), r.FastPsql.RowsPerSecond()))

	fmt.Fprintf(w, "\n(b) slow client: %s/s for %v, then as fast as possible; peak RSS growth of this process (server and client)\n",
		mib(c.SlowRate), c.SlowFor)
	fmt.Fprintln(tw, "\trows\tseconds\tpeak RSS growth\t")
	for _, run := range []ExportRun{r.SlowHoldfast, r.SlowNaive} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t\n", run.Name, run.Rows, run.Elapsed.Seconds(), mib(run.RSSGrowth))
	}
	tw.Flush()
	fmt.Fprintf(w, "naive / holdfast (RSS growth): %.1f×  (target: holdfast ≤ 32 MiB)\n",
		ratio(float64(r.SlowNaive.RSSGrowth), float64(max(r.SlowHoldfast.RSSGrowth, 1))))

	fmt.Fprintf(w, "\n(c) %d concurrent holdfast exports, each read at %s/s and cut off after %v, while %d clients send transfers\n",
		c.Concurrent, mib(c.SlowRate), c.SlowFor, c.Clients)
	fmt.Fprintf(w, "exports streaming until cut off: %d/%d; peak RSS growth: %s  (target ≤ 64 MiB)\n",
		r.ConcurrentOK, c.Concurrent, mib(r.ConcurrentRSSGrowth))
	fmt.Fprintln(tw, "\ttransfers/s\tp50\tp99\tp99.9\tfailed\terrors\t")
	for _, t := range []Result{r.TransfersAlone, r.WithLoad} {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t\n", t.Name, t.Throughput, ms(t.P50), ms(t.P99), ms(t.P999), t.Failed, t.Errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "transfers p99 with / without exports: %.2f×\n", ratio(float64(r.WithLoad.P99), float64(r.TransfersAlone.P99)))
}
