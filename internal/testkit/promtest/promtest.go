// Package promtest reads metrics in tests: the value of one series gathered
// from a Prometheus registry.
package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// GaugeValue returns the value of the gauge name{label="value"} gathered
// from g, and 0 if there is none. It fails tb if g cannot be gathered.
func GaugeValue(tb testing.TB, g prometheus.Gatherer, name, label, value string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
