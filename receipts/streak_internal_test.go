package receipts

import (
	"testing"
	"time"
)

// The workers yield while intake is busy, but not for longer than max in a
// row: sustained uploads are the load, and the workers must keep up with
// it. A quiet moment starts a new stretch.
func TestStreak_YieldIsBoundedPerStretch(t *testing.T) {
	var s streak
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const max = 5 * time.Minute
	steps := []struct {
		at   time.Duration
		busy bool
		want bool
	}{
		{0, false, false},
		{time.Second, true, true},
		{4 * time.Minute, true, true},
		{5*time.Minute + time.Second, true, false}, // the stretch began at 1 s
		{20 * time.Minute, true, false},
		{20*time.Minute + time.Second, false, false},
		{21 * time.Minute, true, true}, // a new spike yields again
		{25 * time.Minute, true, true},
		{26 * time.Minute, true, false},
	}
	for _, st := range steps {
		if got := s.yield(st.busy, t0.Add(st.at), max); got != st.want {
			t.Fatalf("at %v, busy %v: yield %v, want %v", st.at, st.busy, got, st.want)
		}
	}
}
