package load_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

func TestRSS(t *testing.T) {
	n, err := load.RSS()
	if err != nil || n <= 0 {
		t.Fatalf("RSS() = %d, %v; want a positive size", n, err)
	}
	g, err := load.StartRSSGrowth(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if growth := g.Stop(); growth.RSS < 0 {
		t.Fatalf("growth %d < 0", growth.RSS)
	}
}

// What the work being measured holds shows in the live heap's growth, apart
// from the garbage the collector's target lets accumulate.
func TestRSSGrowth_CountsTheLiveHeap(t *testing.T) {
	g, err := load.StartRSSGrowth(time.Hour) // samples at the start and at Stop only
	if err != nil {
		t.Fatal(err)
	}
	const held = 64 << 20
	b := make([]byte, held)
	for i := range b {
		b[i] = byte(i) // touched: resident
	}
	runtime.GC() // the collection that finds it live
	growth := g.Stop()
	runtime.KeepAlive(b)
	// VmRSS is approximate: Linux counts resident pages per thread in
	// batches and folds them in later, so after earlier tests have started
	// threads it may lag by a few of those batches.
	const rssSlack = 4 << 20
	if growth.LiveHeap < held || growth.Heap < held || growth.RSS < held-rssSlack {
		t.Fatalf("holding %d MiB: growth of the live heap %d MiB, the heap %d MiB, RSS %d MiB; want each at least that",
			held>>20, growth.LiveHeap>>20, growth.Heap>>20, growth.RSS>>20)
	}
}
