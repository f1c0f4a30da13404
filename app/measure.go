package app

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// What tests and benchmarks may observe of a running Main beyond its
// exported fields.

// DrainEvents waits (at most 5 minutes) until the outbox is empty and every
// consumer group has applied everything in the stream, so that a benchmark
// run does not pay for the events of the one before.
func (m *Main) DrainEvents(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		var outbox int64
		if err := m.DB.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&outbox); err != nil {
			return err
		}
		lag := uint64(0)
		if m.events != nil {
			groups, err := m.events.admin.ListConsumers(ctx)
			if err != nil {
				return err
			}
			for _, g := range groups {
				lag += g.LagMessages
				if g.NATSError != "" {
					lag++ // unknown while NATS cannot be read: not drained
				}
			}
		}
		if outbox == 0 && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("event log not drained: %d in the outbox, lag %d: %w", outbox, lag, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EventStream returns the configuration of the events stream.
func (m *Main) EventStream() events.StreamConfig { return m.events.stream }

// Consumers returns the consumer groups' administration (lag, pause).
func (m *Main) Consumers() *events.Admin { return m.events.admin }

// Transfers returns the transfer service (its group-commit queue's depth
// and admitted depth among what it tells).
func (m *Main) Transfers() *postgres.TransferService { return m.transfers }

// ReceiptBlobs returns the store of receipt images.
func (m *Main) ReceiptBlobs() receipts.BlobStore { return m.receipts.blobs }

// ReceiptIntakeBusy reports whether uploads arrive fast enough that the
// receipt workers yield to intake (a second replica's workers in a
// benchmark yield to the same signal).
func (m *Main) ReceiptIntakeBusy() bool { return m.receipts.service.Busy() }

// ReceiptDB returns the receipt workers' own database pool.
func (m *Main) ReceiptDB() *postgres.DB { return m.receipts.db }

// Stats is what a running Main has done since it started, for reports.
type Stats struct {
	Ledger               postgres.LedgerStats // group commit
	AdmitDepth           int                  // requests group commit admits to wait now
	Relayed              int64                // events the relay moved into the stream
	StreamSeq            uint64               // the events stream's last sequence (messages stored); 0 if NATS cannot be asked
	ConsumerEvents       int64                // events the consumer groups applied in this replica
	ConsumerTransactions int64                // the transactions they applied them in
	Shed                 map[string]int64     // requests refused by admission control, by "class/reason"
}

// Stats returns the counts of m's components. It asks NATS for the stream's
// last sequence, within ctx.
func (m *Main) Stats(ctx context.Context) Stats {
	st := Stats{Shed: m.Admission.Shed()}
	if m.transfers != nil {
		st.Ledger, st.AdmitDepth = m.transfers.Stats(), m.transfers.AdmitDepth()
	}
	if l := m.events; l != nil {
		if l.relay != nil {
			st.Relayed = l.relay.Relayed()
		}
		st.ConsumerEvents, st.ConsumerTransactions = l.metrics.Totals()
		if m.NATS != nil && l.stream.Name != "" {
			if s, err := m.NATS.JS.Stream(ctx, l.stream.Name); err == nil {
				if info, err := s.Info(ctx); err == nil {
					st.StreamSeq = info.State.LastSeq
				}
			}
		}
	}
	return st
}
