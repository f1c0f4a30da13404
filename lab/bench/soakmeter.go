package bench

import (
	"context"
	"slices"
	"sync"
	"time"
)

// soakMeter counts one kind of soak traffic: per sampling interval (taken
// and reset by take, so its memory does not grow with the run) and over
// the two windows the targets compare, the run's first and last.
type soakMeter struct {
	mu         sync.Mutex
	ok, failed int64
	lat        []time.Duration // successful calls since the last take
	total      struct{ ok, failed int64 }
	windows    [2]soakWindow
}

// soakWindow gathers the calls meant to be sent in [from, to) of the run.
type soakWindow struct {
	from, to time.Duration
	ok       int64
	lat      []time.Duration
}

func newSoakMeter(first, last [2]time.Duration) *soakMeter {
	return &soakMeter{windows: [2]soakWindow{{from: first[0], to: first[1]}, {from: last[0], to: last[1]}}}
}

// record counts a call meant to be sent at offset at into the run, that
// took lat from then (so a stall shows in the latencies) and succeeded or not.
func (m *soakMeter) record(at, lat time.Duration, good bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !good {
		m.failed++
		m.total.failed++
		return
	}
	m.ok++
	m.total.ok++
	m.lat = append(m.lat, lat)
	for i := range m.windows {
		if w := &m.windows[i]; at >= w.from && at < w.to {
			w.ok++
			w.lat = append(w.lat, lat)
		}
	}
}

// take returns the calls since the previous take: successful, failed, and
// the successful ones' p99; and starts a new interval.
func (m *soakMeter) take() (ok, failed int64, p99 time.Duration) {
	m.mu.Lock()
	ok, failed, lat := m.ok, m.failed, m.lat
	m.ok, m.failed, m.lat = 0, 0, make([]time.Duration, 0, len(lat))
	m.mu.Unlock()
	slices.Sort(lat)
	return ok, failed, quantileOf(lat, 0.99)
}

// window returns window i's throughput (successful calls per second) and p99.
func (m *soakMeter) window(i int) (perSec float64, p99 time.Duration) {
	m.mu.Lock()
	w := m.windows[i]
	lat := slices.Clone(w.lat)
	m.mu.Unlock()
	slices.Sort(lat)
	return float64(w.ok) / (w.to - w.from).Seconds(), quantileOf(lat, 0.99)
}

func quantileOf(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, max(0, int(q*float64(len(sorted))+0.5)-1))]
}

// soakLoop calls call at rate per second from start until d has passed
// (an open loop: the schedule does not wait for answers), each with its
// offset into the run, at most maxInFlight at once; a call due while
// maxInFlight wait counts as failed. It returns once every call answered.
func soakLoop(ctx context.Context, start time.Time, rate float64, d time.Duration, maxInFlight int, m *soakMeter,
	call func(ctx context.Context, seq int64) bool) {
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := int64(0); ctx.Err() == nil; i++ {
		at := time.Duration(i) * interval
		if at >= d {
			break
		}
		if wait := time.Until(start.Add(at)); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		select {
		case slots <- struct{}{}:
		default:
			m.record(at, 0, false)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			good := call(ctx, i)
			m.record(at, time.Since(start.Add(at)), good)
		})
	}
	wg.Wait()
}
