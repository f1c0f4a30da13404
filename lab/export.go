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
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/export"
	"github.com/holdfast/holdfast/internal/lifecycle"
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

// MemoryGrowth is how far this process's memory rose above a baseline
// taken right after a collection, at its peak: the RSS; the Go heap's
// objects, live or garbage not yet collected (what GOGC lets grow: at 400,
// up to five times the live heap); and the heap a collection found live,
// which is what the work being measured holds.
type MemoryGrowth struct {
	RSS      int64 `json:"rss"`       // VmRSS
	Heap     int64 `json:"heap"`      // runtime/metrics /memory/classes/heap/objects:bytes
	LiveHeap int64 `json:"live_heap"` // runtime/metrics /gc/heap/live:bytes
}

// RSSGrowth measures how far the process's memory rises above its
// baseline while something runs: StartRSSGrowth collects garbage, returns
// memory to the OS, takes the baseline and samples every interval; Stop
// returns the peak growth.
type RSSGrowth struct {
	mu         sync.Mutex
	base, peak MemoryGrowth
	stop       chan struct{}
	done       chan struct{}
}

// memorySamples are the runtime/metrics MemoryGrowth reads.
var memorySamples = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes"}

// readMemory returns the process's memory now.
func readMemory() (MemoryGrowth, error) {
	rss, err := RSS()
	if err != nil {
		return MemoryGrowth{}, err
	}
	s := make([]metrics.Sample, len(memorySamples))
	for i, name := range memorySamples {
		s[i].Name = name
	}
	metrics.Read(s)
	return MemoryGrowth{RSS: rss, Heap: int64(s[0].Value.Uint64()), LiveHeap: int64(s[1].Value.Uint64())}, nil
}

// StartRSSGrowth starts sampling; see RSSGrowth.
func StartRSSGrowth(interval time.Duration) (*RSSGrowth, error) {
	runtime.GC()
	debug.FreeOSMemory()
	base, err := readMemory()
	if err != nil {
		return nil, err
	}
	g := &RSSGrowth{base: base, peak: base, stop: make(chan struct{}), done: make(chan struct{})}
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
	m, err := readMemory()
	if err != nil {
		return
	}
	g.mu.Lock()
	g.peak = MemoryGrowth{RSS: max(g.peak.RSS, m.RSS), Heap: max(g.peak.Heap, m.Heap), LiveHeap: max(g.peak.LiveHeap, m.LiveHeap)}
	g.mu.Unlock()
}

// Collect runs a collection and samples at once, so that the live heap
// is read as of now: without it, a run shorter than a GC cycle would show
// none of what it holds.
func (g *RSSGrowth) Collect() {
	runtime.GC()
	g.sample()
}

// Stop ends the sampling and returns the peak growth over the baseline.
func (g *RSSGrowth) Stop() MemoryGrowth {
	close(g.stop)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return MemoryGrowth{RSS: g.peak.RSS - g.base.RSS, Heap: g.peak.Heap - g.base.Heap, LiveHeap: g.peak.LiveHeap - g.base.LiveHeap}
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
	Parts       string        // the parts to run, some of "abc"; default all
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
	Config                  ExportBenchConfig
	FastHoldfast, FastPsql  ExportRun // (a) whole file, read as fast as possible
	SlowHoldfast, SlowNaive ExportRun // (b) slow client, with RSS growth
	// (c) The slow exports alone, the transfer closed loop alone, then both
	// at once, each with this process's memory growth. The exports' own
	// share is ExportsAloneMemory; the transfer load's heap, up to five
	// times its live heap at GOGC 400, is most of WithLoadMemory.
	TransfersAlone, WithLoad                 Result
	TransfersAloneMemory, ExportsAloneMemory MemoryGrowth
	WithLoadMemory                           MemoryGrowth
	ExportsAloneOK, ConcurrentOK             int // exports that were answered 200 and streamed until cut
	GCPercent                                int // the collector's target (GOGC) the process ran with
}

// runs reports whether part (a), (b) or (c) is to run.
func (c ExportBenchConfig) runs(part byte) bool {
	return c.Parts == "" || strings.IndexByte(c.Parts, part) >= 0
}

// BenchExport runs the export benchmark's parts (all three unless
// cfg.Parts says otherwise) one after the other.
func BenchExport(ctx context.Context, cfg ExportBenchConfig) (*ExportBench, error) {
	cfg = cfg.withDefaults()
	if strings.Trim(cfg.Parts, "abc") != "" {
		return nil, fmt.Errorf("lab: BenchExport parts %q: want some of a, b and c", cfg.Parts)
	}
	if cfg.Psql == "" && cfg.runs('a') {
		p, err := Psql()
		if err != nil {
			return nil, fmt.Errorf("psql not found: %w", err)
		}
		cfg.Psql = p
	}
	if len(cfg.Transfers) < 2 && cfg.runs('c') {
		return nil, errors.New("lab: BenchExport needs at least 2 transfer accounts")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrent + cfg.Clients + 4}}
	defer client.CloseIdleConnections()
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	res := &ExportBench{Config: cfg, GCPercent: int(gogc[0].Value.Uint64())}
	holdfast := cfg.HoldfastURL + "/v1/accounts/" + cfg.Account + "/transactions.csv"
	naive := cfg.BufferedURL + "/v1/accounts/" + cfg.Account + "/transactions.csv"
	var err error

	if cfg.runs('a') {
		// A first read, not measured, so that neither measured one pays for
		// a cold cache.
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
		if err := wantRows(cfg.Rows, res.FastHoldfast, res.FastPsql); err != nil {
			return nil, err
		}
	}
	if cfg.runs('b') {
		fmt.Fprintf(cfg.Progress, "(b) slow client: holdfast, %v at %d B/s, then fast\n", cfg.SlowFor, cfg.SlowRate)
		if res.SlowHoldfast, err = readExport(ctx, client, "holdfast streaming", holdfast, cfg.APIKey, cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Progress, "(b) slow client: naive buffered\n")
		if res.SlowNaive, err = readExport(ctx, client, "naive buffered", naive, "", cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
			return nil, err
		}
		if err := wantRows(cfg.Rows, res.SlowHoldfast, res.SlowNaive); err != nil {
			return nil, err
		}
	}
	if !cfg.runs('c') {
		return res, nil
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
	// The exports alone come first, while nothing else in the process
	// works: after the transfers, the event relay and consumers would
	// still be draining (and freeing) what they left.
	fmt.Fprintf(cfg.Progress, "(c) %d slow exports alone\n", cfg.Concurrent)
	if res.ExportsAloneMemory, res.ExportsAloneOK, err = concurrentExports(ctx, client, cfg, holdfast,
		func() { lifecycle.Sleep(ctx, cfg.SlowFor) }); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "(c) transfers alone: %d clients, %v\n", cfg.Clients, cfg.SlowFor)
	growth, err := StartRSSGrowth(cfg.RSSInterval)
	if err != nil {
		return nil, err
	}
	res.TransfersAlone = ClosedLoop(ctx, "transfers alone", cfg.Clients, cfg.SlowFor, TransferCall(poster, cfg.APIKey, 1, pick))
	res.TransfersAloneMemory = growth.Stop()
	fmt.Fprintf(cfg.Progress, "(c) transfers with %d slow exports\n", cfg.Concurrent)
	res.WithLoadMemory, res.ConcurrentOK, err = concurrentExports(ctx, client, cfg, holdfast, func() {
		res.WithLoad = ClosedLoop(ctx, fmt.Sprintf("transfers + %d exports", cfg.Concurrent), cfg.Clients, cfg.SlowFor,
			TransferCall(poster, cfg.APIKey, 2, pick))
	})
	return res, err
}

// wantRows checks that each run read every row.
func wantRows(rows int64, runs ...ExportRun) error {
	for _, r := range runs {
		if r.Rows != rows {
			return fmt.Errorf("%s: %d rows, want %d", r.Name, r.Rows, rows)
		}
	}
	return nil
}

// concurrentExports starts cfg.Concurrent slow exports, runs load once all
// are streaming, then disconnects them; it returns the peak memory growth
// and how many exports streamed until cut.
func concurrentExports(ctx context.Context, client *http.Client, cfg ExportBenchConfig, url string, load func()) (MemoryGrowth, int, error) {
	growth, err := StartRSSGrowth(cfg.RSSInterval)
	if err != nil {
		return MemoryGrowth{}, 0, err
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
	load()
	growth.Collect() // what the exports hold, while they still stream
	cancel()
	wg.Wait()
	return growth.Stop(), int(ok.Load()), nil
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
	run.RSSGrowth = growth.Stop().RSS
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
	if c.runs('a') {
		fmt.Fprintf(w, "\n(a) fast client: one account of %d entries, read whole as fast as possible\n", c.Rows)
		fmt.Fprintln(tw, "\trows\tMB\tseconds\trows/s\tMB/s\t")
		for _, run := range []ExportRun{r.FastHoldfast, r.FastPsql} {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.0f\t%.1f\t\n", run.Name, run.Rows, float64(run.Bytes)/1e6, run.Elapsed.Seconds(), run.RowsPerSecond(), run.MBPerSecond())
		}
		tw.Flush()
		fmt.Fprintf(w, "holdfast / psql (rows/s): %.2f  (target ≥ 0.80)\n", ratio(r.FastHoldfast.RowsPerSecond(), r.FastPsql.RowsPerSecond()))
	}

	if c.runs('b') {
		fmt.Fprintf(w, "\n(b) slow client: %s/s for %v, then as fast as possible; peak RSS growth of this process (server and client)\n",
			mib(c.SlowRate), c.SlowFor)
		fmt.Fprintln(tw, "\trows\tseconds\tpeak RSS growth\t")
		for _, run := range []ExportRun{r.SlowHoldfast, r.SlowNaive} {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t\n", run.Name, run.Rows, run.Elapsed.Seconds(), mib(run.RSSGrowth))
		}
		tw.Flush()
		fmt.Fprintf(w, "naive / holdfast (RSS growth): %.1f×  (target: holdfast ≤ 32 MiB)\n",
			ratio(float64(r.SlowNaive.RSSGrowth), float64(max(r.SlowHoldfast.RSSGrowth, 1))))
	}

	if !c.runs('c') {
		return
	}
	fmt.Fprintf(w, "\n(c) %d slow holdfast exports (each read at %s/s, cut off after %v) and %d clients sending transfers, alone and together;\n"+
		"peak growth of this process's memory: RSS, the Go heap (garbage included: it may reach 1 + GOGC/100 times the live heap) and the live heap\n",
		c.Concurrent, mib(c.SlowRate), c.SlowFor, c.Clients)
	fmt.Fprintln(tw, "\tRSS\theap\tlive heap\texports streaming until cut off\t")
	for _, m := range []struct {
		name string
		mem  MemoryGrowth
		ok   string
	}{
		{fmt.Sprintf("%d exports alone", c.Concurrent), r.ExportsAloneMemory, fmt.Sprintf("%d/%d", r.ExportsAloneOK, c.Concurrent)},
		{"transfers alone", r.TransfersAloneMemory, ""},
		{fmt.Sprintf("transfers + %d exports", c.Concurrent), r.WithLoadMemory, fmt.Sprintf("%d/%d", r.ConcurrentOK, c.Concurrent)},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.name, mib(m.mem.RSS), mib(m.mem.Heap), mib(m.mem.LiveHeap), m.ok)
	}
	tw.Flush()
	fmt.Fprintf(w, "the exports' own share: %d exports alone grow RSS by %s  (target ≤ 64 MiB) and hold %s of live heap\n",
		c.Concurrent, mib(r.ExportsAloneMemory.RSS), mib(r.ExportsAloneMemory.LiveHeap))
	fmt.Fprintf(w, "(at GOGC %d the heap may grow to %d× the live heap: the exports' garbage fills that headroom over this process's own\n"+
		"live heap when nothing else does; the transfers alone grow RSS by %s, most of the last row)\n",
		r.GCPercent, 1+r.GCPercent/100, mib(r.TransfersAloneMemory.RSS))
	fmt.Fprintln(tw, "\ttransfers/s\tp50\tp99\tp99.9\tfailed\terrors\t")
	for _, t := range []Result{r.TransfersAlone, r.WithLoad} {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t\n", t.Name, t.Throughput, ms(t.P50), ms(t.P99), ms(t.P999), t.Failed, t.Errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "transfers p99 with / without exports: %.2f×\n", ratio(float64(r.WithLoad.P99), float64(r.TransfersAlone.P99)))
}
