package scenario

import (
	"testing"
)

// TestScenarioHealth asserts what holds on any machine, however loaded: the
// lane never runs more jobs at once than its size and refuses beyond its
// queue, the naive way runs more than that at once, and /healthz answered
// every probe in both runs. Latencies are reported, not asserted. Not
// parallel: it measures how this process's cores are shared.
func TestScenarioHealth(t *testing.T) {
	runs := mustRun(t, "health").Data.([]healthRun)
	naive, lane := runs[0], runs[1]
	if lane.LaneSize < 1 || lane.MostAtOnce > int64(lane.LaneSize) {
		t.Errorf("lane of %d ran %d jobs at once", lane.LaneSize, lane.MostAtOnce)
	}
	if lane.Work.Failed == 0 {
		t.Errorf("lane: %d clients, no request refused (%+v); the lane should refuse beyond its queue of %d", lane.Clients, lane.Work, lane.LaneQueue)
	}
	if naive.MostAtOnce <= int64(lane.LaneSize) {
		t.Errorf("naive: at most %d jobs at once with %d clients, want more than the lane's %d", naive.MostAtOnce, naive.Clients, lane.LaneSize)
	}
	for _, r := range runs {
		if r.Work.OK == 0 {
			t.Errorf("%s: no /work done", r.Name)
		}
		if r.Health.Probes == 0 || r.Health.Failed != 0 || r.Idle.Failed != 0 {
			t.Errorf("%s: /healthz during the load %+v, idle %+v; want every probe answered", r.Name, r.Health, r.Idle)
		}
	}
}
