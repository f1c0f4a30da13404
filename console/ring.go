package console

import (
	"math"
	"sync"
	"time"
)

// Ring keeps the last Size samples of a bounded set of series, each sample
// a time and a value per series: memory is Size × MaxSeries floats whatever
// the uptime. A series first seen after the ring filled has no values (NaN)
// for the samples before it.
type Ring struct {
	mu    sync.RWMutex
	size  int
	max   int
	n     int // samples stored, at most size
	next  int // where the next sample goes
	times []int64
	// order keeps the series in the order they were first seen, so that
	// charts do not reshuffle their lines from one poll to the next.
	order  []string
	values map[string][]float64
}

// NewRing returns a ring of size samples of at most maxSeries series.
func NewRing(size, maxSeries int) *Ring {
	return &Ring{size: size, max: maxSeries, times: make([]int64, size), values: map[string][]float64{}}
}

// Append stores a sample taken at t. Values of series the ring does not
// know yet are dropped once it holds maxSeries series.
func (r *Ring) Append(t time.Time, values map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range values {
		if _, ok := r.values[name]; !ok && len(r.order) < r.max {
			v := make([]float64, r.size)
			for i := range v {
				v[i] = math.NaN()
			}
			r.values[name] = v
			r.order = append(r.order, name)
		}
	}
	r.times[r.next] = t.UnixMilli()
	for name, v := range r.values {
		x, ok := values[name]
		if !ok {
			x = math.NaN()
		}
		v[r.next] = x
	}
	r.next = (r.next + 1) % r.size
	r.n = min(r.n+1, r.size)
}

// Window is a copy of the samples taken after a time, oldest first.
type Window struct {
	Times  []int64              // Unix milliseconds
	Series []string             // in the order first seen
	Values map[string][]float64 // per series, one per time; NaN where unknown
}

// Since returns the samples taken after since (Unix milliseconds; 0 for
// all of them).
func (r *Ring) Since(since int64) Window {
	r.mu.RLock()
	defer r.mu.RUnlock()
	w := Window{Series: append([]string(nil), r.order...), Values: map[string][]float64{}}
	first := (r.next - r.n + r.size) % r.size
	var idx []int
	for k := 0; k < r.n; k++ {
		i := (first + k) % r.size
		if r.times[i] > since {
			idx = append(idx, i)
		}
	}
	w.Times = make([]int64, len(idx))
	for k, i := range idx {
		w.Times[k] = r.times[i]
	}
	for _, name := range r.order {
		src, dst := r.values[name], make([]float64, len(idx))
		for k, i := range idx {
			dst[k] = src[i]
		}
		w.Values[name] = dst
	}
	return w
}

// Latest returns the newest value of a series (NaN if none).
func (r *Ring) Latest(name string) float64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.values[name]
	if !ok || r.n == 0 {
		return math.NaN()
	}
	return v[(r.next-1+r.size)%r.size]
}
