package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/lifecycle"
	"github.com/holdfast/holdfast/lab/load"
)

// ExportConfig configures the export benchmark: one account with a long
// history, served by Holdfast and by a naive.BufferedExport, read by psql too.
type ExportConfig struct {
	DatabaseURL string // for psql (a libpq URI)
	Psql        string // psql's path; default Psql()
	Tenant      string
	Account     string // the account exported, with Rows entries
	Rows        int64
	HoldfastURL string
	APIKey      string // the tenant's, for Holdfast
	BufferedURL string // a naive.BufferedExport of the tenant

	SlowRate    int64         // bytes per second of a slow client; default 1 MiB
	SlowFor     time.Duration // how long a slow client reads slowly; default 20s
	Concurrent  int           // slow exports at once in part (c); default 16
	Transfers   []string      // accounts of the tenant the transfer load moves money between (≥ 2, funded)
	Clients     int           // closed-loop transfer clients; default 16
	RSSInterval time.Duration // default 100ms
	Progress    io.Writer     // progress lines; nil for none
	Parts       string        // the parts to run, some of "abc"; default all
}

func (c ExportConfig) withDefaults() ExportConfig {
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

// RowsPerSecond is the run's rate in rows.
func (r ExportRun) RowsPerSecond() float64 { return float64(r.Rows) / r.Elapsed.Seconds() }

// MBPerSecond is the run's rate in megabytes (10⁶ bytes).
func (r ExportRun) MBPerSecond() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// ExportResult is what RunExport measured.
type ExportResult struct {
	Config                  ExportConfig
	FastHoldfast, FastPsql  ExportRun // (a) whole file, read as fast as possible
	SlowHoldfast, SlowNaive ExportRun // (b) slow client, with RSS growth
	// (c) The slow exports alone, the transfer closed loop alone, then both
	// at once, each with this process's memory growth. The exports' own
	// share is ExportsAloneMemory; the transfer load's heap, up to five
	// times its live heap at GOGC 400, is most of WithLoadMemory.
	TransfersAlone, WithLoad                 load.Result
	TransfersAloneMemory, ExportsAloneMemory load.MemoryGrowth
	WithLoadMemory                           load.MemoryGrowth
	ExportsAloneOK, ConcurrentOK             int // exports that were answered 200 and streamed until cut
	GCPercent                                int // the collector's target (GOGC) the process ran with
}

// runs reports whether part (a), (b) or (c) is to run.
func (c ExportConfig) runs(part byte) bool {
	return c.Parts == "" || strings.IndexByte(c.Parts, part) >= 0
}

// RunExport runs the export benchmark's parts (all three unless
// cfg.Parts says otherwise) one after the other. It returns an error if
// cfg.Parts names another part, if part (a) finds no psql, if part (c) has
// fewer than 2 transfer accounts, or if a read fails or misses rows.
func RunExport(ctx context.Context, cfg ExportConfig) (*ExportResult, error) {
	cfg = cfg.withDefaults()
	if strings.Trim(cfg.Parts, "abc") != "" {
		return nil, fmt.Errorf("bench: RunExport parts %q: want some of a, b and c", cfg.Parts)
	}
	if cfg.Psql == "" && cfg.runs('a') {
		p, err := Psql()
		if err != nil {
			return nil, fmt.Errorf("psql not found: %w", err)
		}
		cfg.Psql = p
	}
	if len(cfg.Transfers) < 2 && cfg.runs('c') {
		return nil, errors.New("bench: RunExport needs at least 2 transfer accounts")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrent + cfg.Clients + 4}}
	defer client.CloseIdleConnections()
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	r := &exportRun{cfg: cfg, client: client, res: &ExportResult{Config: cfg, GCPercent: int(gogc[0].Value.Uint64())},
		holdfast: cfg.HoldfastURL + "/v1/accounts/" + cfg.Account + "/transactions.csv",
		naive:    cfg.BufferedURL + "/v1/accounts/" + cfg.Account + "/transactions.csv"}
	for _, part := range []struct {
		name byte
		run  func(context.Context) error
	}{{'a', r.fastClient}, {'b', r.slowClient}, {'c', r.exportsBesideTransfers}} {
		if !cfg.runs(part.name) {
			continue
		}
		if err := part.run(ctx); err != nil {
			return nil, err
		}
	}
	return r.res, nil
}

// exportRun is one RunExport: its client, the two export URLs, and what
// it measured.
type exportRun struct {
	cfg             ExportConfig
	client          *http.Client
	holdfast, naive string
	res             *ExportResult
}

// fastClient is part (a): Holdfast's export and psql's \copy, read whole
// as fast as possible.
func (r *exportRun) fastClient(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	// A first read, not measured, so that neither measured one pays for
	// a cold cache.
	fmt.Fprintf(cfg.Progress, "(a) warming the cache: psql \\copy, not measured\n")
	if _, err := runPsql(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "(a) fast client: holdfast, %d rows\n", cfg.Rows)
	var err error
	if res.FastHoldfast, err = readExport(ctx, r.client, "holdfast GET .csv", r.holdfast, cfg.APIKey, 0, 0, cfg.RSSInterval); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "(a) fast client: psql \\copy\n")
	if res.FastPsql, err = runPsql(ctx, cfg); err != nil {
		return err
	}
	return wantRows(cfg.Rows, res.FastHoldfast, res.FastPsql)
}

// slowClient is part (b): a slow client of Holdfast's streaming export,
// then of the naive buffered one, with this process's RSS growth.
func (r *exportRun) slowClient(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	fmt.Fprintf(cfg.Progress, "(b) slow client: holdfast, %v at %d B/s, then fast\n", cfg.SlowFor, cfg.SlowRate)
	var err error
	if res.SlowHoldfast, err = readExport(ctx, r.client, "holdfast streaming", r.holdfast, cfg.APIKey, cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "(b) slow client: naive buffered\n")
	if res.SlowNaive, err = readExport(ctx, r.client, "naive buffered", r.naive, "", cfg.SlowRate, cfg.SlowFor, cfg.RSSInterval); err != nil {
		return err
	}
	return wantRows(cfg.Rows, res.SlowHoldfast, res.SlowNaive)
}

// exportsBesideTransfers is part (c): slow exports alone, transfers
// alone, then both at once, each with this process's memory growth.
func (r *exportRun) exportsBesideTransfers(ctx context.Context) error {
	cfg, res := r.cfg, r.res
	pick := func(rng *rand.Rand) (string, string) {
		i := rng.IntN(len(cfg.Transfers))
		j := (i + 1 + rng.IntN(len(cfg.Transfers)-1)) % len(cfg.Transfers)
		return cfg.Transfers[i], cfg.Transfers[j]
	}
	poster, err := load.NewPoster(cfg.HoldfastURL, cfg.Clients, time.Minute)
	if err != nil {
		return err
	}
	defer poster.Close()
	// The exports alone come first, while nothing else in the process
	// works: after the transfers, the event relay and consumers would
	// still be draining (and freeing) what they left.
	fmt.Fprintf(cfg.Progress, "(c) %d slow exports alone\n", cfg.Concurrent)
	if res.ExportsAloneMemory, res.ExportsAloneOK, err = concurrentExports(ctx, r.client, cfg, r.holdfast,
		func() { lifecycle.Sleep(ctx, cfg.SlowFor) }); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "(c) transfers alone: %d clients, %v\n", cfg.Clients, cfg.SlowFor)
	growth, err := load.StartRSSGrowth(cfg.RSSInterval)
	if err != nil {
		return err
	}
	res.TransfersAlone = load.ClosedLoop(ctx, "transfers alone", cfg.Clients, cfg.SlowFor, load.TransferCall(poster, cfg.APIKey, 1, pick))
	res.TransfersAloneMemory = growth.Stop()
	fmt.Fprintf(cfg.Progress, "(c) transfers with %d slow exports\n", cfg.Concurrent)
	res.WithLoadMemory, res.ConcurrentOK, err = concurrentExports(ctx, r.client, cfg, r.holdfast, func() {
		res.WithLoad = load.ClosedLoop(ctx, fmt.Sprintf("transfers + %d exports", cfg.Concurrent), cfg.Clients, cfg.SlowFor,
			load.TransferCall(poster, cfg.APIKey, 2, pick))
	})
	return err
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

// concurrentExports starts cfg.Concurrent slow exports, runs whileStreaming
// once all are streaming, then disconnects them; it returns the peak memory growth
// and how many exports streamed until cut.
func concurrentExports(ctx context.Context, client *http.Client, cfg ExportConfig, url string, whileStreaming func()) (load.MemoryGrowth, int, error) {
	growth, err := load.StartRSSGrowth(cfg.RSSInterval)
	if err != nil {
		return load.MemoryGrowth{}, 0, err
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
	whileStreaming()
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
	growth, err := load.StartRSSGrowth(interval)
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
