package load

import (
	"bufio"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

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
	return 0, errors.New("load: no VmRSS in /proc/self/status")
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
