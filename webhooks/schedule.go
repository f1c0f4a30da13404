package webhooks

import (
	"math/rand/v2"
	"time"
)

// DefaultSchedule is when each attempt is made, counted from the failure of
// the one before: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h
// (about 27.6 hours in all, Svix's schedule).
var DefaultSchedule = Schedule{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Schedule lists the delay before each attempt: Schedule[0] before the
// first, Schedule[n] after the n-th failed. Its length is the number of
// attempts a message gets.
type Schedule []time.Duration

// Scaled returns the schedule with every delay multiplied by f (tests run
// the whole schedule in seconds).
func (s Schedule) Scaled(f float64) Schedule {
	out := make(Schedule, len(s))
	for i, d := range s {
		out[i] = time.Duration(float64(d) * f)
	}
	return out
}

// Next returns when the attempt after attempt (1-based, the one that just
// failed at now) is due, with ±10% jitter drawn by rnd (rand.Float64 when
// nil) so that the messages of an outage do not all come back at once;
// ok=false when attempt was the last.
func (s Schedule) Next(attempt int, now time.Time, rnd func() float64) (time.Time, bool) {
	if attempt >= len(s) {
		return time.Time{}, false
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	d := s[attempt]
	d += time.Duration((rnd()*0.2 - 0.1) * float64(d))
	return now.Add(d), true
}
