package report_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/lab/report"
)

func TestChartLines(t *testing.T) {
	c := &report.Chart{Title: "t <&>", XLabel: "s", YLabel: "MiB",
		Series:  []report.Series{{Name: "a", Points: []report.Point{{0, 1}, {1, 3}, {2, 2}}}, {Name: "b"}},
		Markers: []report.Marker{{X: 1, Label: "phase \"2\""}}}
	var b strings.Builder
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal([]byte(b.String()), new(struct{})); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b.String())
	}
	for _, want := range []string{"<polyline", "t &lt;&amp;&gt;", "stroke-dasharray"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestChartBars(t *testing.T) {
	c := &report.Chart{Title: "bars", YLabel: "ms", Bars: []report.Bar{
		{Label: "sequential", Value: 10038.6, Group: "naive"}, {Label: "at most 20", Value: 606, Group: "bounded", Note: "606 ms"}}}
	var b strings.Builder
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal([]byte(b.String()), new(struct{})); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	for _, want := range []string{">10039<", ">606 ms<", ">naive<", ">bounded<", ">10k<"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q:\n%s", want, b.String())
		}
	}
}
