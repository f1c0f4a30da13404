package lab_test

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab"
)

// TestTransfersWorkload_Target: the p99 target reads the open loop nearest
// 80% of the peak, and MetUpTo is the highest share of the peak up to which
// every open loop met 50 ms with every request served, whatever order they
// ran in.
func TestTransfersWorkload_Target(t *testing.T) {
	ms := time.Millisecond
	open := func(rate float64, p99 time.Duration) lab.Result {
		return lab.Result{Offered: rate, OK: 100, P99: p99}
	}
	w := lab.TransfersWorkload{
		Holdfast: []lab.Result{{Throughput: 6_000}, {Throughput: 10_000}},
		Open:     []lab.Result{open(8_000, 45*ms), open(5_000, 20*ms), open(6_000, 50*ms), open(7_000, 70*ms)},
	}
	if got := w.TargetOpen().Offered; got != 8_000 {
		t.Errorf("TargetOpen at %v/s, want the one at 80%% of the peak, 8000/s", got)
	}
	if got := w.MetUpTo(); got != 0.6 {
		t.Errorf("MetUpTo %v, want 0.6 (7,000/s missed, so 8,000/s's pass does not count)", got)
	}

	w.Open = []lab.Result{open(5_000, 51*ms), open(4_000, 10*ms)}
	if got := w.TargetOpen().Offered; got != 5_000 {
		t.Errorf("TargetOpen at %v/s, want the nearest to 8,000/s, 5000/s", got)
	}
	if got := w.MetUpTo(); got != 0.4 {
		t.Errorf("MetUpTo %v, want 0.4", got)
	}

	// A loop whose p99 is low because requests were shed, or never sent,
	// does not meet the target: its p99 is that of the survivors.
	shed, unsent := open(4_000, 10*ms), open(4_000, 10*ms)
	shed.Failed, unsent.Errors = 1, 1
	for _, bad := range []lab.Result{shed, unsent} {
		w.Open = []lab.Result{open(3_000, 10*ms), bad, open(5_000, 20*ms)}
		if got := w.MetUpTo(); got != 0.3 {
			t.Errorf("MetUpTo %v with a loop at 4,000/s that had %d not ok and %d errors, want 0.3", got, bad.Failed, bad.Errors)
		}
	}

	w.Open = []lab.Result{{Offered: 3_000, P99: 0}} // nothing succeeded: a p99 of 0 is no pass
	if got := w.MetUpTo(); got != 0 {
		t.Errorf("MetUpTo %v with no successful request, want 0", got)
	}
	w.Open = nil
	if got, f := w.TargetOpen(), w.MetUpTo(); got.Offered != 0 || f != 0 {
		t.Errorf("no open loop: TargetOpen %+v, MetUpTo %v; want zero", got, f)
	}
}
