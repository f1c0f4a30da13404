package scenario

import (
	"testing"
)

// TestScenarioBurst: the naive queue is killed by the burst and loses what
// it held; the log loses nothing and applies nothing twice, through a pause.
func TestScenarioBurst(t *testing.T) {
	t.Parallel()
	res := mustRun(t, "burst").Data.(*burstScenario)
	if n := res.Naive; !n.Killed || n.Lost == 0 {
		t.Errorf("naive: killed %v, %d lost (%d produced, %d consumed); want the burst to kill it with events in the queue", n.Killed, n.Lost, n.Produced, n.Consumed)
	}
	h := res.Holdfast
	if h.Produced == 0 || h.Audited != h.Produced || h.Analyzed != h.Produced || h.Lost != 0 || h.Duplicated != 0 {
		t.Errorf("Holdfast: produced %d, audited %d, analytics %d, lost %d, duplicated %d; want all equal, none lost or twice",
			h.Produced, h.Audited, h.Analyzed, h.Lost, h.Duplicated)
	}
	if !h.Drained || h.PeakLag == 0 {
		t.Errorf("Holdfast: peak lag %d, drained %v; want the lag to rise and drain", h.PeakLag, h.Drained)
	}
	if len(res.PauseErrors) > 0 || res.ResumedAt <= res.PausedAt {
		t.Errorf("pause %.1f s, resume %.1f s, errors %v", res.PausedAt, res.ResumedAt, res.PauseErrors)
	}
}
