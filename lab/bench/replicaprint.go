package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// printReplica prints the runs of the replica benchmark and the ratio of
// the transfers' p99 with exports on the replica to that with exports on
// the primary.
func printReplica(w io.Writer, o ReplicaOptions, runs []ReplicaRun) {
	fmt.Fprintf(w, "\ntransfers at %.0f/s (open loop, %v measured after %v) beside %d exports of a %d-entry account, run back to back\n\n",
		o.Rate, o.Duration, o.Warmup, o.Exports, o.Entries)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\ttransfers ok\terrors\tp50\tp99\tp99.9\texports read\texported MB\t")
	for _, r := range runs {
		t := r.Transfers
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%v\t%v\t%v\t%d\t%.0f\t\n", r.Name, t.OK, t.Sent, t.Errors+t.Failed,
			t.P50.Round(10*time.Microsecond), t.P99.Round(10*time.Microsecond), t.P999.Round(10*time.Microsecond),
			r.Exports, float64(r.ExportBytes)/1e6)
	}
	tw.Flush()
	if len(runs) == 2 && runs[0].Transfers.P99 > 0 {
		fmt.Fprintf(w, "\ntransfers' p99, exports on the replica / on the primary: %.2f\n",
			float64(runs[1].Transfers.P99)/float64(runs[0].Transfers.P99))
	}
}
