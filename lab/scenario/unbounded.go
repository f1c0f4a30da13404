package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/lab/report"
)

func init() {
	register(Scenario{
		Name: "unbounded", Section: "Part 1, mistake 3",
		Description: "10,000 queries fired at once at a 20-connection pool vs at most 20 in flight: errors, timeouts, total time",
		Run:         runUnbounded,
	})
}

// queryStorm is one way of sending many queries through one pool.
type queryStorm struct {
	Name     string        `json:"name"`
	Queries  int           `json:"queries"`
	OK       int64         `json:"ok"`
	TimedOut int64         `json:"timed_out"` // the caller's deadline passed, mostly waiting for a connection
	Errors   int64         `json:"errors"`    // any other error
	Elapsed  time.Duration `json:"elapsed_ns"`
	// A bystander on the same pool (another endpoint of the service) runs
	// a trivial query every 20 ms meanwhile, with the same deadline.
	BystanderOK, BystanderFailed int64
	BystanderMax                 time.Duration `json:"bystander_max_ns"`
}

// fireQueries runs queries copies of sql (with args) on pool, each under
// its own deadline of timeout, at most limit at once (0: all at once, the
// naive way: "Promise.all" of 10,000 queries). It returns the counts.
func fireQueries(ctx context.Context, pool *pgxpool.Pool, name string, queries, limit int, timeout time.Duration, sql string, args ...any) queryStorm {
	if limit <= 0 {
		limit = queries
	}
	s := queryStorm{Name: name, Queries: queries}
	var ok, timedOut, errs atomic.Int64
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup

	stop := make(chan struct{})
	var bystander sync.WaitGroup
	bystander.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			qctx, cancel := context.WithTimeout(ctx, timeout)
			t0 := time.Now()
			_, err := pool.Exec(qctx, "SELECT 1")
			cancel()
			s.BystanderMax = max(s.BystanderMax, time.Since(t0))
			if err != nil {
				s.BystanderFailed++
			} else {
				s.BystanderOK++
			}
		}
	})

	start := time.Now()
	for range queries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			qctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			_, err := pool.Exec(qctx, sql, args...)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, context.DeadlineExceeded) || qctx.Err() != nil:
				timedOut.Add(1)
			default:
				errs.Add(1)
			}
		})
	}
	wg.Wait()
	s.Elapsed = time.Since(start)
	close(stop)
	bystander.Wait()
	s.OK, s.TimedOut, s.Errors = ok.Load(), timedOut.Load(), errs.Load()
	return s
}

func runUnbounded(ctx context.Context, env *Env) (*report.Report, error) {
	queries := pick(env.Scale, 400, 10_000, 10_000)
	conns := pick(env.Scale, 4, 20, 20)
	queryTime := pick(env.Scale, 20*time.Millisecond, 10*time.Millisecond, 10*time.Millisecond)
	timeout := pick(env.Scale, 500*time.Millisecond, time.Second, time.Second)

	url, err := env.NewDatabase(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	version := serverVersion(ctx, pool)
	// Open every connection first, so neither run pays for dialling.
	fireQueries(ctx, pool, "warm-up", conns, conns, 10*time.Second, "SELECT 1")

	sql := "SELECT pg_sleep($1)"
	var runs []queryStorm
	for _, v := range []struct {
		name  string
		limit int
	}{{"naive: all at once", 0}, {fmt.Sprintf("at most %d in flight", conns), conns}} {
		env.progressf("unbounded: %s, %d queries of %v on a pool of %d, each under a %v deadline", v.name, queries, queryTime, conns, timeout)
		runs = append(runs, fireQueries(ctx, pool, v.name, queries, v.limit, timeout, sql, queryTime.Seconds()))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	r := &report.Report{
		Claim: `A dev hears "use Promise.all" and fires 10,000 DB queries at once. The connection pool is exhausted in
milliseconds. The DB starts queuing, then timing out. Suddenly every service sharing that DB is degraded […]
The fix: bounded concurrency. […] Twenty in flight at a time is usually plenty.`,
		Measured: fmt.Sprintf(`%d queries (each "SELECT pg_sleep(%g)": a query that takes %v) through one pgxpool of %d
connections, every query under a request deadline of %v (waiting for a connection included): first all
fired at once, then through a semaphore of %d. Meanwhile a bystander — another endpoint of the same service
— runs SELECT 1 on the same pool every 20 ms under the same deadline.`,
			queries, queryTime.Seconds(), queryTime, conns, timeout, conns),
		Columns:    []string{"way", "queries", "ok", "timed out", "other errors", "total", "bystander ok / failed", "bystander worst"},
		Data:       runs,
		PostgreSQL: version,
		Chart:      &report.Chart{Title: fmt.Sprintf("%d queries on a pool of %d: queries that failed", queries, conns), YLabel: "failed queries"},
	}
	for i, s := range runs {
		r.Rows = append(r.Rows, []string{s.Name, fmt.Sprint(s.Queries), fmt.Sprint(s.OK), fmt.Sprint(s.TimedOut), fmt.Sprint(s.Errors),
			msec(s.Elapsed), fmt.Sprintf("%d / %d", s.BystanderOK, s.BystanderFailed), msec(s.BystanderMax)})
		group := "naive"
		if i > 0 {
			group = "bounded"
		}
		r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: s.Name, Value: float64(s.TimedOut + s.Errors), Group: group,
			Note: fmt.Sprintf("%d failed, %s", s.TimedOut+s.Errors, msec(s.Elapsed))})
	}
	n, b := runs[0], runs[1]
	r.Findings = []string{
		fmt.Sprintf("all at once: %d of %d queries failed (%.0f%%); bounded: %d failed",
			n.TimedOut+n.Errors, n.Queries, 100*float64(n.TimedOut+n.Errors)/float64(n.Queries), b.TimedOut+b.Errors),
		fmt.Sprintf("the bystander, meanwhile: worst wait %s with %d ok and %d failed while everything was fired at once; %s worst, %d ok, %d failed with the bound",
			msec(n.BystanderMax), n.BystanderOK, n.BystanderFailed, msec(b.BystanderMax), b.BystanderOK, b.BystanderFailed),
		fmt.Sprintf("bounded took %s for all %d (≈ %d / %d × %v); unbounded finished sooner only by failing",
			msec(b.Elapsed), b.Queries, queries, conns, queryTime),
	}
	return r, nil
}

// serverVersion returns the PostgreSQL server's version, or "".
func serverVersion(ctx context.Context, pool *pgxpool.Pool) string {
	var v string
	pool.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v
}
