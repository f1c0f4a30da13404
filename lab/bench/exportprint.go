package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/report"
)

// printExport writes the benchmark's results as side-by-side tables with
// their ratios and targets.
func printExport(w io.Writer, r *ExportResult) {
	c := r.Config
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if c.runs('a') {
		fmt.Fprintf(w, "\n(a) fast client: one account of %d entries, read whole as fast as possible\n", c.Rows)
		fmt.Fprintln(tw, "\trows\tMB\tseconds\trows/s\tMB/s\t")
		for _, run := range []ExportRun{r.FastHoldfast, r.FastPsql} {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.0f\t%.1f\t\n", run.Name, run.Rows, float64(run.Bytes)/1e6, run.Elapsed.Seconds(), run.RowsPerSecond(), run.MBPerSecond())
		}
		tw.Flush()
		fmt.Fprintf(w, "holdfast / psql (rows/s): %.2f  (target ≥ 0.80)\n", report.Ratio(r.FastHoldfast.RowsPerSecond(), r.FastPsql.RowsPerSecond()))
	}

	if c.runs('b') {
		fmt.Fprintf(w, "\n(b) slow client: %s/s for %v, then as fast as possible; peak RSS growth of this process (server and client)\n",
			mib(c.SlowRate), c.SlowFor)
		fmt.Fprintln(tw, "\trows\tseconds\tpeak RSS growth\t")
		for _, run := range []ExportRun{r.SlowHoldfast, r.SlowNaive} {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t\n", run.Name, run.Rows, run.Elapsed.Seconds(), mib(run.RSSGrowth))
		}
		tw.Flush()
		fmt.Fprintf(w, "naive / holdfast (RSS growth): %.1f×  (target: holdfast ≤ 32 MiB)\n",
			report.Ratio(float64(r.SlowNaive.RSSGrowth), float64(max(r.SlowHoldfast.RSSGrowth, 1))))
	}

	if !c.runs('c') {
		return
	}
	fmt.Fprintf(w, "\n(c) %d slow holdfast exports (each read at %s/s, cut off after %v) and %d clients sending transfers, alone and together;\n"+
		"peak growth of this process's memory: RSS, the Go heap (garbage included: it may reach 1 + GOGC/100 times the live heap) and the live heap\n",
		c.Concurrent, mib(c.SlowRate), c.SlowFor, c.Clients)
	fmt.Fprintln(tw, "\tRSS\theap\tlive heap\texports streaming until cut off\t")
	for _, m := range []struct {
		name string
		mem  load.MemoryGrowth
		ok   string
	}{
		{fmt.Sprintf("%d exports alone", c.Concurrent), r.ExportsAloneMemory, fmt.Sprintf("%d/%d", r.ExportsAloneOK, c.Concurrent)},
		{"transfers alone", r.TransfersAloneMemory, ""},
		{fmt.Sprintf("transfers + %d exports", c.Concurrent), r.WithLoadMemory, fmt.Sprintf("%d/%d", r.ConcurrentOK, c.Concurrent)},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.name, mib(m.mem.RSS), mib(m.mem.Heap), mib(m.mem.LiveHeap), m.ok)
	}
	tw.Flush()
	fmt.Fprintf(w, "the exports' own share: %d exports alone grow RSS by %s  (target ≤ 64 MiB) and hold %s of live heap\n",
		c.Concurrent, mib(r.ExportsAloneMemory.RSS), mib(r.ExportsAloneMemory.LiveHeap))
	fmt.Fprintf(w, "(at GOGC %d the heap may grow to %d× the live heap: the exports' garbage fills that headroom over this process's own\n"+
		"live heap when nothing else does; the transfers alone grow RSS by %s, most of the last row)\n",
		r.GCPercent, 1+r.GCPercent/100, mib(r.TransfersAloneMemory.RSS))
	fmt.Fprintln(tw, "\ttransfers/s\tp50\tp99\tp99.9\tfailed\terrors\t")
	for _, t := range []load.Result{r.TransfersAlone, r.WithLoad} {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t\n", t.Name, t.Throughput, ms(t.P50), ms(t.P99), ms(t.P999), t.Failed, t.Errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "transfers p99 with / without exports: %.2f×\n", report.Ratio(float64(r.WithLoad.P99), float64(r.TransfersAlone.P99)))
}
