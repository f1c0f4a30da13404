package load

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CPUTask is a CPU-bound task: iterations rounds of SHA-256 over the
// previous digest, starting from seed. It returns the last digest's first
// 8 bytes, so the work cannot be optimised away and the results compared.
func CPUTask(seed, iterations int) uint64 {
	var d [32]byte
	binary.LittleEndian.PutUint64(d[:], uint64(seed))
	for range iterations {
		d = sha256.Sum256(d[:])
	}
	return binary.LittleEndian.Uint64(d[:])
}

// CPUJobsResult is CPU-bound jobs run as fast as possible through a lane
// while /healthz is probed.
type CPUJobsResult struct {
	Name          string
	Done, Refused int64
	Elapsed       time.Duration
	Health        HealthStats
}

// RunCPUJobs runs workers goroutines that each submit CPU-bound jobs
// (CPUTask of iterations rounds) through do for d, while /healthz at
// healthURL is probed every 50 ms. A refused job's worker waits refusedWait
// before its next job, as a client would wait for a 503 to come back (a
// worker spinning on refusals would burn the cores itself).
func RunCPUJobs(ctx context.Context, name string, workers, iterations int, d, refusedWait time.Duration, healthURL string, do func(context.Context, func() error) error) CPUJobsResult {
	stop := probeHealth(ctx, healthURL, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := do(ctx, func() error { CPUTask(w*1_000_000+i, iterations); return nil })
				switch {
				case err == nil:
					done.Add(1)
				case ctx.Err() == nil:
					refused.Add(1)
					time.Sleep(refusedWait)
				}
			}
		})
	}
	wg.Wait()
	return CPUJobsResult{Name: name, Done: done.Load(), Refused: refused.Load(), Elapsed: time.Since(start), Health: stop()}
}

// CPUTimes are the machine's CPU counters (/proc/stat's first line): the
// time every core was busy, and in all.
type CPUTimes struct{ busy, total uint64 }

// ReadCPU returns the machine's CPU counters now; an error where there is
// no /proc/stat (Linux only).
func ReadCPU() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var c CPUTimes
	for i, s := range f[1:] {
		n, _ := strconv.ParseUint(s, 10, 64)
		c.total += n
		if i != 3 && i != 4 { // idle, iowait
			c.busy += n
		}
	}
	return c, nil
}

// BusySince returns the share of the machine's CPU busy since prev, from
// 0 to 1.
func (c CPUTimes) BusySince(prev CPUTimes) float64 {
	if c.total <= prev.total {
		return 0
	}
	return float64(c.busy-prev.busy) / float64(c.total-prev.total)
}

// WithCPU runs run and sets its result's CPUBusy: the share of the
// machine's CPU that was busy from skip after run started to its end (every
// process: load generator, server, database, event consumers).
func WithCPU(skip time.Duration, run func() Result) Result {
	type sample struct {
		c   CPUTimes
		err error
	}
	from := make(chan sample, 1)
	read := func() { c, err := ReadCPU(); from <- sample{c, err} }
	if skip > 0 {
		time.AfterFunc(skip, read)
	} else {
		read()
	}
	r := run()
	if to, err := ReadCPU(); err == nil {
		if before := <-from; before.err == nil {
			r.CPUBusy = to.BusySince(before.c)
		}
	}
	return r
}
