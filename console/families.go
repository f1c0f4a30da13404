package console

import (
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
)

// families indexes gathered metric families by name.
type families map[string]*dto.MetricFamily

func indexFamilies(fams []*dto.MetricFamily) families {
	f := make(families, len(fams))
	for _, mf := range fams {
		f[mf.GetName()] = mf
	}
	return f
}

// label returns the value of a metric's label ("" if it has none).
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value returns a counter's, gauge's or untyped metric's value.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

// sum adds the values of a family's metrics that keep passes (all when keep
// is nil); ok is false when the family is absent.
func (f families) sum(name string, keep func(*dto.Metric) bool) (total float64, ok bool) {
	mf := f[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if keep == nil || keep(m) {
			total += value(m)
		}
	}
	return total, true
}

// by adds a family's values by the value of one label.
func (f families) by(name, labelName string) map[string]float64 {
	out := map[string]float64{}
	if mf := f[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			out[label(m, labelName)] += value(m)
		}
	}
	return out
}

// hist is a histogram merged over its metrics: cumulative counts by upper
// bound, the count and the sum.
type hist struct {
	bounds []float64
	counts []float64
	count  float64
	sum    float64
}

// histogram merges a family's histograms that keep passes (all when keep is
// nil); ok is false when the family is absent.
func (f families) histogram(name string, keep func(*dto.Metric) bool) (h hist, ok bool) {
	mf := f[name]
	if mf == nil {
		return h, false
	}
	idx := map[float64]int{}
	for _, m := range mf.GetMetric() {
		if keep != nil && !keep(m) || m.Histogram == nil {
			continue
		}
		hm := m.GetHistogram()
		h.count += float64(hm.GetSampleCount())
		h.sum += hm.GetSampleSum()
		for _, b := range hm.GetBucket() {
			i, seen := idx[b.GetUpperBound()]
			if !seen {
				i = len(h.bounds)
				idx[b.GetUpperBound()] = i
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.counts = append(h.counts, 0)
			}
			h.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	h.sortBuckets()
	return h, true
}

func (h *hist) sortBuckets() {
	order := make([]int, len(h.bounds))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return h.bounds[order[a]] < h.bounds[order[b]] })
	bounds, counts := make([]float64, len(order)), make([]float64, len(order))
	for k, i := range order {
		bounds[k], counts[k] = h.bounds[i], h.counts[i]
	}
	h.bounds, h.counts = bounds, counts
}

// minus returns what h observed since prev (same buckets, or none in prev).
func (h hist) minus(prev hist) hist {
	d := hist{bounds: h.bounds, counts: make([]float64, len(h.counts)), count: h.count - prev.count, sum: h.sum - prev.sum}
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(prev.counts) && prev.bounds[i] == h.bounds[i] {
			d.counts[i] -= prev.counts[i]
		}
	}
	return d
}

// quantile estimates the q-quantile by linear interpolation within the
// bucket it falls in, as Prometheus's histogram_quantile does; NaN without
// observations. Past the last finite bound it returns that bound.
func (h hist) quantile(q float64) float64 {
	if h.count <= 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, upper := range h.bounds {
		if h.counts[i] >= rank {
			if math.IsInf(upper, 1) {
				return lower
			}
			in := h.counts[i] - below
			if in <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/in
		}
		lower, below = upper, h.counts[i]
	}
	return lower
}

// mean is the mean observation, NaN without observations.
func (h hist) mean() float64 {
	if h.count <= 0 {
		return math.NaN()
	}
	return h.sum / h.count
}
