package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// PrintWebhooks prints the runs of the webhooks benchmark: per run the
// transfers' latency, then per endpoint class the delivery.
func PrintWebhooks(w io.Writer, o WebhooksOptions, runs []WebhookRun) {
	fmt.Fprintf(w, "%d endpoints (one per tenant, transfer.posted), %.0f transfers/s for %s per run; attempt timeout %s; "+
		"bad runs: endpoint 1 never answers, 2 answers 500 half the time, 3 takes %s; naive pool: %d workers, FIFO, the same retry schedule\n\n",
		o.Endpoints, o.Rate, o.Duration, o.Timeout, o.Slow, o.Workers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\ttransfers 201\tp50\tp99\tendpoints\tevents\tdelivered\tduplicates\tdelivery p50\tdelivery p99\t")
	for _, r := range runs {
		t := r.Transfers
		head := fmt.Sprintf("%s\t%d\t%s\t%s", r.Name, t.OK, ms(t.P50), ms(t.P99))
		if len(r.Classes) == 0 || !(r.Holdfast || r.Naive) {
			fmt.Fprintf(tw, "%s\t—\t\t\t\t\t\t\n", head)
			continue
		}
		for i, c := range r.Classes {
			if i > 0 {
				head = "\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t\n", head, c.Class, c.Sent, c.Delivered, c.Duplicates, ms(c.P50), ms(c.P99))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	byName := map[string]WebhookRun{}
	for _, r := range runs {
		byName[r.Name] = r
	}
	alone := byName["transfers alone"].Transfers.P99
	hOK, hBad := byName["Holdfast, all healthy"].Healthy().P99, byName["Holdfast, 3 bad endpoints"].Healthy().P99
	nOK, nBad := byName["naive pool, all healthy"].Healthy().P99, byName["naive pool, 3 bad endpoints"].Healthy().P99
	fmt.Fprintf(w, "healthy endpoints' delivery p99 with 3 bad endpoints ÷ all healthy: Holdfast %s (%s → %s; target ≤ 1.5× and ≤ 1 s), naive pool %s (%s → %s)\n",
		ratio(hBad, hOK), ms(hOK), ms(hBad), ratio(nBad, nOK), ms(nOK), ms(nBad))
	fmt.Fprintf(w, "healthy endpoints' delivery p99 with 3 bad endpoints, naive pool ÷ Holdfast: %s\n", ratio(nBad, hBad))
	fmt.Fprintf(w, "transfers' p99 with Holdfast's webhooks (3 bad endpoints) ÷ without webhooks: %s (%s → %s)\n",
		ratio(byName["Holdfast, 3 bad endpoints"].Transfers.P99, alone), ms(alone), ms(byName["Holdfast, 3 bad endpoints"].Transfers.P99))
}

func ms(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}
