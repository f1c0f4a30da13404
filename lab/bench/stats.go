package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/app"
)

// batchStats returns a function that describes the group-commit batches
// since its previous call (with their requests' mean wait in the queue),
// the events the relay moved into the stream in how many messages, and the
// events the consumer groups applied in how many transactions (all groups
// together: a group yields to the requests while they pile up, and catches
// up after).
func batchStats(m *app.Main) func() string {
	var last app.Stats
	return func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		now := m.Stats(ctx)
		// Every baseline moves on each call, batches or none: a call made
		// to reset the counts before a run must not leave what the relay
		// and consumers did before it (the naive server's events) to be
		// counted in that run's line.
		prev := last
		last = now
		batches := now.Ledger.Batches - prev.Ledger.Batches
		if batches == 0 {
			return "no batches"
		}
		requests := now.Ledger.Requests - prev.Ledger.Requests
		line := fmt.Sprintf("group commit: %d batches, mean %.1f requests, mean %.2f ms each, after %.2f ms in the queue on average",
			batches, float64(requests)/float64(batches), 1000*(now.Ledger.BatchSeconds-prev.Ledger.BatchSeconds)/float64(batches),
			1000*(now.Ledger.QueueWaitSeconds-prev.Ledger.QueueWaitSeconds)/float64(max(requests, 1)))
		if now.StreamSeq > 0 {
			line += fmt.Sprintf("; relayed meanwhile: %d events in %d stream messages", now.Relayed-prev.Relayed, now.StreamSeq-prev.StreamSeq)
		}
		return line + fmt.Sprintf("; consumer groups applied %d events in %d transactions",
			now.ConsumerEvents-prev.ConsumerEvents, now.ConsumerTransactions-prev.ConsumerTransactions)
	}
}

// shedCounts describes what the server has refused so far, by reason.
func shedCounts(m *app.Main) string {
	st := m.Stats(context.Background())
	var out []string
	if m.Config.GroupCommit {
		out = append(out, fmt.Sprintf("group-commit queue %d (admitted depth %d)", st.Ledger.Shed, st.AdmitDepth))
	}
	reasons := make([]string, 0, len(st.Shed))
	for r := range st.Shed {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		out = append(out, fmt.Sprintf("%s %d", r, st.Shed[r]))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
