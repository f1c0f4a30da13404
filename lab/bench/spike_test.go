package bench

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// The receipt spike at a tiny scale: the capped pipeline stays within its
// cap and connection budget and every receipt ends ready; the naive
// consumer runs on the same load.
func TestSpike_Tiny(t *testing.T) {
	t.Parallel()
	capped, naive, err := Spike(context.Background(), pgtest.ServerURL(), SpikeConfig{Rate: 100, Duration: 2 * time.Second, MaxDrain: time.Minute, Cap: 10, DBConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if capped.Enqueued == 0 || !capped.Drained || capped.Lost != 0 || capped.Pending != 0 || capped.Failed != 0 || capped.Ready != capped.Enqueued {
		t.Fatalf("capped run: %+v", capped)
	}
	if capped.MaxInFlight > 10 || capped.MaxDBConns > 4 {
		t.Fatalf("capped run exceeded its cap or budget: %d in flight, %d connections", capped.MaxInFlight, capped.MaxDBConns)
	}
	// Under a loaded test run the naive consumer may starve the uploads; it
	// must still have run.
	if naive.Enqueued == 0 {
		t.Fatalf("naive run: %+v", naive)
	}
}
