package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/app"
)

// batchStats returns a function that describes the group-commit batches
// since its previous call (with their requests' mean wait in the queue), the events the relay moved into the stream in
// how many messages, and the events the consumer groups applied in how many
// transactions (all groups together: a group yields to the requests while
// they pile up, and catches up after).
func batchStats(m *app.Main) func() string {
	var lastCount, lastSize, lastSeconds, lastWaits, lastWaited, lastRelayed, lastApplies, lastApplied float64
	var lastSeq uint64
	return func() string {
		families, err := m.Registry.Gather()
		if err != nil {
			return err.Error()
		}
		var count, size, seconds, waits, waited, relayed, applies, applied float64
		for _, f := range families {
			for _, metric := range f.GetMetric() {
				switch f.GetName() {
				case "holdfast_ledger_batch_size":
					count, size = float64(metric.GetHistogram().GetSampleCount()), metric.GetHistogram().GetSampleSum()
				case "holdfast_ledger_batch_seconds":
					seconds = metric.GetHistogram().GetSampleSum()
				case "holdfast_ledger_queue_wait_seconds":
					waits, waited = float64(metric.GetHistogram().GetSampleCount()), metric.GetHistogram().GetSampleSum()
				case "holdfast_outbox_relayed_total":
					relayed = metric.GetCounter().GetValue()
				case "holdfast_consumer_batch_seconds":
					applies += float64(metric.GetHistogram().GetSampleCount())
				case "holdfast_consumer_applied_total":
					applied += metric.GetCounter().GetValue()
				}
			}
		}
		dc, ds, dt := count-lastCount, size-lastSize, seconds-lastSeconds
		dw, dq := waits-lastWaits, waited-lastWaited
		lastCount, lastSize, lastSeconds, lastWaits, lastWaited = count, size, seconds, waits, waited
		// Every baseline moves on each call, batches or none: a call made
		// to reset the counts before a run must not leave what the relay
		// and consumers did before it (the naive server's events) to be
		// counted in that run's line.
		var events string
		if m.EventStream().Name != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if st, err := m.NATS.JS.Stream(ctx, m.EventStream().Name); err == nil {
				if info, err := st.Info(ctx); err == nil {
					events += fmt.Sprintf("; relayed meanwhile: %.0f events in %d stream messages",
						relayed-lastRelayed, info.State.LastSeq-lastSeq)
					lastRelayed, lastSeq = relayed, info.State.LastSeq
				}
			}
			events += fmt.Sprintf("; consumer groups applied %.0f events in %.0f transactions", applied-lastApplied, applies-lastApplies)
			lastApplied, lastApplies = applied, applies
		}
		if dc == 0 {
			return "no batches"
		}
		// Every batch counted observed the queue wait of each of its requests, so dw ≥ dc > 0.
		return fmt.Sprintf("group commit: %.0f batches, mean %.1f requests, mean %.2f ms each, after %.2f ms in the queue on average",
			dc, ds/dc, 1000*dt/dc, 1000*dq/dw) + events
	}
}

// shedCounts describes the server's shed counters so far, by reason.
func shedCounts(m *app.Main) string {
	families, err := m.Registry.Gather()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, f := range families {
		if f.GetName() == "holdfast_ledger_shed_total" && len(f.GetMetric()) > 0 && m.Writer() != nil {
			out = append(out, fmt.Sprintf("group-commit queue %.0f (admitted depth %d)", f.GetMetric()[0].GetCounter().GetValue(), m.Writer().AdmitDepth()))
		}
		if f.GetName() != "holdfast_admission_shed_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			out = append(out, fmt.Sprintf("%s %.0f", strings.Join(labels, "/"), metric.GetCounter().GetValue()))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
