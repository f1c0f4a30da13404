package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// SoakSample is the state of the soak at one moment: the traffic since the
// previous sample, the server's memory, the storage and the backlog.
type SoakSample struct {
	At      time.Duration
	Traffic map[string]SoakTraffic // by kind (soakKinds)
	RSS     int64                  // the server process's resident set, bytes
	Heap    int64                  // its Go heap in use (go_memstats_heap_inuse_bytes)
	DB      int64                  // pg_database_size
	// Tables holds the size of each hot table with its indexes, TOAST and
	// partitions (soakTables).
	Tables map[string]int64
	NATS   int64 // the embedded NATS server's files
	Outbox int64 // rows in the outbox
	// Lag is each consumer group's lag in stream messages and seconds.
	Lag        map[string]int64
	LagSeconds map[string]float64
}

// SoakTraffic is one kind of traffic over a sampling interval.
type SoakTraffic struct {
	PerSec float64 // successful calls per second
	Failed int64
	P99    time.Duration
}

// soakTables are the tables whose size the soak samples. The time-bounded
// ones hold a window of recent traffic and should stop growing once their
// retention turns over; the ledger's grow with every transfer, by design.
var (
	soakBoundedTables = []string{"idempotency_keys", "outbox", "consumer_applied"}
	soakLedgerTables  = []string{"transfers", "entries", "audit_records", "analytics_minutes", "receipts"}
)

// Bounded returns the size of the time-bounded tables together.
func (s SoakSample) Bounded() int64 {
	var n int64
	for _, t := range soakBoundedTables {
		n += s.Tables[t]
	}
	return n
}

// sample measures everything once; since is the time since the previous
// sample. A gauge that cannot be read is left at zero, and the run goes on.
func (r *soakRun) sample(ctx context.Context, at, since time.Duration) SoakSample {
	ctx, cancel := context.WithTimeout(ctx, r.o.Interval)
	defer cancel()
	s := SoakSample{At: at, Traffic: map[string]SoakTraffic{}, Tables: map[string]int64{},
		Lag: map[string]int64{}, LagSeconds: map[string]float64{}}
	for kind, m := range r.meters {
		ok, failed, p99 := m.take()
		s.Traffic[kind] = SoakTraffic{PerSec: float64(ok) / since.Seconds(), Failed: failed, P99: p99}
	}
	s.RSS, _ = r.srv.rss()
	if v, err := r.srv.metric(ctx, "go_memstats_heap_inuse_bytes"); err == nil {
		s.Heap = int64(v)
	}
	pool := r.db.Pool
	pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&s.DB)
	for _, t := range append(slices.Clone(soakBoundedTables), soakLedgerTables...) {
		var n int64
		// The table and, if it is partitioned, every partition (its own
		// size is then zero): the sum holds either way.
		pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(r)), 0)::bigint FROM (
			SELECT to_regclass($1::text) AS r UNION SELECT relid FROM pg_partition_tree(to_regclass($1::text))) t WHERE r IS NOT NULL`, t).Scan(&n)
		s.Tables[t] = n
	}
	s.NATS = r.srv.natsBytes()
	pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&s.Outbox)
	if lags, err := r.srv.lags(ctx); err == nil {
		for _, l := range lags {
			s.Lag[l.Name], s.LagSeconds[l.Name] = l.LagMessages, l.LagSeconds
		}
	}
	return s
}

func printSoakHeader(w io.Writer) {
	fmt.Fprintf(w, "%7s %8s %8s %7s %8s %8s %8s %8s %8s %8s %7s %s\n", "t", "xfer/s", "p99 ms", "failed", "events/s",
		"RSS MiB", "heap MiB", "PG MiB", "bounded", "NATS MiB", "outbox", "lag (messages)")
}

func printSoakSample(w io.Writer, s SoakSample) {
	t := s.Traffic["transfers"]
	groups := make([]string, 0, len(s.Lag))
	for g := range s.Lag {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	lag := ""
	for _, g := range groups {
		lag += fmt.Sprintf(" %s %d", g, s.Lag[g])
	}
	fmt.Fprintf(w, "%7s %8.0f %8.1f %7d %8.0f %8.1f %8.1f %8.1f %8.1f %8.1f %7d%s\n", s.At.Round(time.Second), t.PerSec, msOf(t.P99),
		t.Failed+s.Traffic["events"].Failed+s.Traffic["receipts"].Failed+s.Traffic["exports"].Failed,
		s.Traffic["events"].PerSec, mib(s.RSS), mib(s.Heap), mib(s.DB), mib(s.Bounded()), mib(s.NATS), s.Outbox, lag)
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(n int64) float64          { return float64(n) / (1 << 20) }
