package bench

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/lab/report"
)

// PrintSoak prints a soak's settings, checks and targets.
func PrintSoak(w io.Writer, res *SoakResult) {
	o := res.Options
	fmt.Fprintf(w, "holdfast-lab bench soak — %s\n", res.Machine)
	rate := fmt.Sprintf("%.0f transfers/s (given)", o.Rate)
	if res.Capacity > 0 {
		rate = fmt.Sprintf("%.0f transfers/s = %.2f × the %.0f/s measured in a %s closed-loop probe", o.Rate, o.CapacityFraction, res.Capacity, o.CapacityProbe)
	}
	fmt.Fprintf(w, "%s for %s: %s, %.0f client events/s, %.2f receipt uploads/s, an export every %s; %.0f%% of keyed requests sent twice\n",
		"mixed open-loop traffic", o.Duration, rate, o.Rate*o.EventShare, o.ReceiptRate, o.ExportEvery, 100*o.Retry)
	fmt.Fprintf(w, "limits shrunk to a %s retention period: %s\n", o.Retention, strings.Join(res.Passed, " "))
	if n := len(res.Samples); n > 0 {
		first, last := res.Samples[0], res.Samples[n-1]
		var ledger0, ledger1 int64
		for _, t := range soakLedgerTables {
			ledger0, ledger1 = ledger0+first.Tables[t], ledger1+last.Tables[t]
		}
		fmt.Fprintf(w, "PostgreSQL database %.1f → %.1f MiB over the run, of which the ledger's tables (%s, growing with every transfer by design) %.1f → %.1f MiB\n",
			mib(first.DB), mib(last.DB), strings.Join(soakLedgerTables, ", "), mib(ledger0), mib(ledger1))
	}
	if o.Duration < 10*60e9 {
		fmt.Fprintf(w, "the run is under 10 minutes: the targets compare its first and last fifth (%s each), not 5-minute windows\n", o.Window)
	}
	fmt.Fprintln(w, "\nchecks at the end:")
	for _, c := range res.Checks {
		fmt.Fprintf(w, "  %-4s %s: %s\n", map[bool]string{true: "ok", false: "FAIL"}[c.OK], c.Name, c.Detail)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, c := range res.Targets {
		verdict := map[bool]string{true: "PASS", false: "MISS"}[c.OK]
		if strings.HasPrefix(c.Detail, "n/a") {
			verdict = "n/a"
		}
		fmt.Fprintf(w, "  %-4s %s: %s\n", verdict, c.Name, c.Detail)
	}
}

// Failed returns the checks that failed.
func (res *SoakResult) Failed() []SoakCheck {
	var out []SoakCheck
	for _, c := range res.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// WriteSoak writes dir/samples.csv and the charts (SVG) of a soak.
func WriteSoak(dir string, res *SoakResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.csv"), soakCSV(res.Samples), 0o644); err != nil {
		return err
	}
	for name, c := range soakCharts(res) {
		var b bytes.Buffer
		if err := c.WriteSVG(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".svg"), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// soakGroups returns the consumer groups seen in any sample, sorted.
func soakGroups(samples []SoakSample) []string {
	var out []string
	for _, s := range samples {
		for g := range s.Lag {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	slices.Sort(out)
	return out
}

func soakCSV(samples []SoakSample) []byte {
	groups := soakGroups(samples)
	tables := append(slices.Clone(soakBoundedTables), soakLedgerTables...)
	head := []string{"at_s"}
	for _, k := range soakKinds {
		head = append(head, k+"_per_s", k+"_failed", k+"_p99_ms")
	}
	head = append(head, "rss_bytes", "heap_inuse_bytes", "pg_database_bytes", "nats_store_bytes", "outbox_rows")
	for _, t := range tables {
		head = append(head, t+"_bytes")
	}
	for _, g := range groups {
		head = append(head, "lag_"+g+"_messages", "lag_"+g+"_seconds")
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(head)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range samples {
		row := []string{f(s.At.Seconds())}
		for _, k := range soakKinds {
			t := s.Traffic[k]
			row = append(row, f(t.PerSec), i(t.Failed), f(msOf(t.P99)))
		}
		row = append(row, i(s.RSS), i(s.Heap), i(s.DB), i(s.NATS), i(s.Outbox))
		for _, t := range tables {
			row = append(row, i(s.Tables[t]))
		}
		for _, g := range groups {
			row = append(row, i(s.Lag[g]), f(s.LagSeconds[g]))
		}
		w.Write(row)
	}
	w.Flush()
	return b.Bytes()
}

// soakCharts draws the soak over time, one chart per concern, each with
// the first window's end and the retention period marked.
func soakCharts(res *SoakResult) map[string]*report.Chart {
	o, samples := res.Options, res.Samples
	minutes := func(s SoakSample) float64 { return s.At.Minutes() }
	series := func(name string, v func(SoakSample) float64) report.Series {
		ser := report.Series{Name: name}
		for _, s := range samples {
			ser.Points = append(ser.Points, report.Point{X: minutes(s), Y: v(s)})
		}
		return ser
	}
	markers := []report.Marker{{X: o.Window.Minutes(), Label: "end of first window"}}
	for t := o.Retention; t < o.Duration; t += o.Retention {
		markers = append(markers, report.Marker{X: t.Minutes(), Label: fmt.Sprintf("retention ×%d", int(t/o.Retention))})
		if len(markers) > 8 {
			break
		}
	}
	chart := func(title, y string, ss ...report.Series) *report.Chart {
		return &report.Chart{Title: title, XLabel: "minutes into the soak", YLabel: y, Series: ss, Markers: markers}
	}
	var throughput, p99 []report.Series
	for _, k := range soakKinds {
		throughput = append(throughput, series(k, func(s SoakSample) float64 { return s.Traffic[k].PerSec }))
		p99 = append(p99, series(k, func(s SoakSample) float64 { return msOf(s.Traffic[k].P99) }))
	}
	var lag []report.Series
	for _, g := range soakGroups(samples) {
		lag = append(lag, series(g+" lag", func(s SoakSample) float64 { return float64(s.Lag[g]) }))
	}
	lag = append(lag, series("outbox rows", func(s SoakSample) float64 { return float64(s.Outbox) }))
	return map[string]*report.Chart{
		"throughput": chart("Soak: throughput by kind", "successful requests per second", throughput...),
		"p99":        chart("Soak: p99 latency by kind", "ms", p99...),
		"memory": chart("Soak: Holdfast's memory", "MiB",
			series("RSS", func(s SoakSample) float64 { return mib(s.RSS) }),
			series("Go heap in use", func(s SoakSample) float64 { return mib(s.Heap) })),
		"storage": chart("Soak: storage", "MiB",
			series("PostgreSQL database", func(s SoakSample) float64 { return mib(s.DB) }),
			series("time-bounded tables", func(s SoakSample) float64 { return mib(s.Bounded()) }),
			series("NATS store", func(s SoakSample) float64 { return mib(s.NATS) })),
		"backlog": chart("Soak: outbox depth and consumer groups' lag", "messages (outbox: rows)", lag...),
	}
}
