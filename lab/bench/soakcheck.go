package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// checks waits for the backlog to drain, then checks what the soak must
// leave behind: the ledger's invariants, one audit record per committed
// change and per acknowledged client event, every acknowledged client
// event counted once by analytics, every receipt processed.
func (r *soakRun) checks(ctx context.Context) []SoakCheck {
	out := []SoakCheck{r.drain(ctx)}
	err := postgres.VerifyLedger(ctx, r.db, r.tenant)
	out = append(out, SoakCheck{Name: "ledger invariant", OK: err == nil, Detail: errText(err, "money conserved, no negative balance, balances = entries")})

	q := func(sql string, args ...any) int64 {
		var n int64
		if err := r.db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	changes := q(`SELECT (SELECT count(*) FROM accounts WHERE tenant_id = $1) + (SELECT count(*) FROM transfers WHERE tenant_id = $1)`, r.tenant) - r.seeded
	audited := q(`SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND type IN ($2, $3)`, r.tenant, holdfast.EventAccountCreated, holdfast.EventTransferPosted)
	dups := q(`SELECT count(*) - count(DISTINCT event_id) FROM audit_records WHERE tenant_id = $1`, r.tenant)
	out = append(out, SoakCheck{Name: "every committed change audited exactly once", OK: changes == audited && dups == 0,
		Detail: fmt.Sprintf("%d changes committed, %d audit records of them, %d event ids recorded twice", changes, audited, dups)})
	chain, err := r.verifyAudit(ctx)
	out = append(out, SoakCheck{Name: "audit chain verifies", OK: err == nil, Detail: errText(err, fmt.Sprintf("%d records recomputed from the first", chain))})

	acked := r.traffic.ackedEvents()
	inAudit := q(`SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])`, r.tenant, acked)
	counted := q(`SELECT coalesce(sum(count), 0)::bigint FROM analytics_minutes WHERE tenant_id = $1 AND type = $2`, r.tenant, soakEventType)
	stored := q(`SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND type = $2`, r.tenant, soakEventType)
	n := int64(len(acked))
	out = append(out, SoakCheck{Name: "every acknowledged client event counted once", OK: inAudit == n && counted == n && stored == n,
		Detail: fmt.Sprintf("%d acknowledged (%d keyed requests sent twice, %d repeats answered otherwise than the first: %s); audit holds %d of them and %d in all; analytics counted %d",
			n, r.traffic.retries.Load(), r.traffic.replayFailed.Load(), r.traffic.replayAnswersText(), inAudit, stored, counted)})

	uploads := r.traffic.receipts.Load()
	ready := q(`SELECT count(*) FROM receipts WHERE tenant_id = $1 AND status = 'ready'`, r.tenant)
	all := q(`SELECT count(*) FROM receipts WHERE tenant_id = $1`, r.tenant)
	out = append(out, SoakCheck{Name: "every receipt processed", OK: uploads > 0 && ready == uploads && all == uploads,
		Detail: fmt.Sprintf("%d uploads accepted, %d receipts stored, %d ready", uploads, all, ready)})
	return out
}

// drain waits until the outbox is empty, every group has caught up and no
// receipt waits, for at most MaxDrain.
func (r *soakRun) drain(ctx context.Context) SoakCheck {
	start := time.Now()
	var state string
	for {
		var outbox, pending int64
		r.db.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&outbox)
		r.db.Pool.QueryRow(ctx, "SELECT count(*) FROM receipts WHERE tenant_id = $1 AND status IN ('queued', 'processing')", r.tenant).Scan(&pending)
		lags, err := r.srv.lags(ctx)
		var behind []string
		for _, l := range lags {
			if l.LagMessages > 0 {
				behind = append(behind, fmt.Sprintf("%s %d", l.Name, l.LagMessages))
			}
		}
		state = fmt.Sprintf("outbox %d, receipts waiting %d, groups behind: %s", outbox, pending, strings.Join(behind, ", "))
		if err == nil && outbox == 0 && pending == 0 && len(behind) == 0 {
			return SoakCheck{Name: "backlog drained", OK: true, Detail: fmt.Sprintf("in %s after the traffic", time.Since(start).Round(100*time.Millisecond))}
		}
		if time.Since(start) > r.o.MaxDrain || ctx.Err() != nil {
			return SoakCheck{Name: "backlog drained", Detail: fmt.Sprintf("not within %s: %s", r.o.MaxDrain, state)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// verifyAudit recomputes the tenant's hash chain from its first record.
func (r *soakRun) verifyAudit(ctx context.Context) (int64, error) {
	svc := postgres.NewAuditService(r.db)
	req := holdfast.AuditVerifyRequest{FromStart: true}
	var records int64
	for {
		v, err := svc.VerifyAudit(ctx, r.tenant, req)
		if err != nil {
			return records, err
		}
		records += v.Records
		if !v.OK {
			return records, fmt.Errorf("the chain breaks at record %d: %s", v.FirstBad, v.Reason)
		}
		if !v.More {
			return records, nil
		}
		req = holdfast.AuditVerifyRequest{Cursor: v.NextCursor}
	}
}

func errText(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// targets computes the figures from the samples and the meters.
func (r *soakRun) targets(samples []SoakSample) []SoakCheck {
	o := r.o
	within := func(a, b float64) bool { return b > 0 && math.Abs(a/b-1) <= 0.10 }
	var out []SoakCheck
	// A moment's heap is wherever the collector's cycle is (GOGC 400 lets
	// it swing 5×): each side is the mean over a span of samples.
	span := max(3*o.Interval, o.Window/5)
	for _, m := range []struct {
		name string
		v    func(SoakSample) int64
	}{{"server RSS", func(s SoakSample) int64 { return s.RSS }}, {"Go heap in use", func(s SoakSample) int64 { return s.Heap }}} {
		at, end := meanOver(samples, o.Window-span, o.Window, m.v), meanOver(samples, o.Duration-span, o.Duration, m.v)
		out = append(out, SoakCheck{Name: fmt.Sprintf("%s at the end within 10%% of its value at %s (means over %s)", m.name, o.Window, span),
			OK: within(end, at), Detail: fmt.Sprintf("%.1f MiB → %.1f MiB (%s)", at/(1<<20), end/(1<<20), pct(end, at))})
	}
	// Keys' partitions are dropped whole within a quarter of a retention
	// after it ends (postgres.KeyRotator), the stream's events after it.
	natsTurn, pgTurn := 2*o.Retention, 2*o.Retention
	out = append(out, flatAfter(samples, "NATS store", natsTurn, o, func(s SoakSample) int64 { return s.NATS }),
		flatAfter(samples, "PostgreSQL time-bounded tables ("+strings.Join(soakBoundedTables, ", ")+")", pgTurn, o, SoakSample.Bounded))
	t := r.meters["transfers"]
	firstRate, firstP99 := t.window(0)
	lastRate, lastP99 := t.window(1)
	out = append(out,
		SoakCheck{Name: "transfer throughput, last " + o.Window.String() + " within 10% of the first", OK: within(lastRate, firstRate),
			Detail: fmt.Sprintf("%.1f/s → %.1f/s (%s)", firstRate, lastRate, pct(lastRate, firstRate))},
		SoakCheck{Name: "transfer p99, last " + o.Window.String() + " within 10% of the first", OK: within(msOf(lastP99), msOf(firstP99)),
			Detail: fmt.Sprintf("%.1f ms → %.1f ms (%s)", msOf(firstP99), msOf(lastP99), pct(msOf(lastP99), msOf(firstP99)))})
	return out
}

// meanOver returns the mean of v over the samples taken in (from, to].
func meanOver(samples []SoakSample, from, to time.Duration, v func(SoakSample) int64) float64 {
	var sum, n float64
	for _, s := range samples {
		if s.At > from && s.At <= to {
			sum += float64(v(s))
			n++
		}
	}
	return sum / max(n, 1)
}

// flatAfter compares a storage gauge's mean over the window that starts
// once retention has turned over (turn) with its mean over the run's last
// window: flat if within 10%.
func flatAfter(samples []SoakSample, name string, turn time.Duration, o SoakOptions, v func(SoakSample) int64) SoakCheck {
	c := SoakCheck{Name: name + " flat once retention turned over (" + turn.String() + ")"}
	end := o.Duration - o.Window
	if turn > end {
		c.Detail = fmt.Sprintf("n/a: retention turns over after %s, later than the last window's start (%s): run longer", turn, end)
		return c
	}
	after, last := meanOver(samples, turn, turn+o.Window, v), meanOver(samples, end, o.Duration, v)
	c.OK = after > 0 && math.Abs(last/after-1) <= 0.10
	c.Detail = fmt.Sprintf("mean %.1f MiB over (%s, %s] → %.1f MiB over the last %s (%s)", after/(1<<20), turn, turn+o.Window, last/(1<<20), o.Window, pct(last, after))
	return c
}

func pct(now, was float64) string {
	if was == 0 {
		return "no base"
	}
	return fmt.Sprintf("%+.1f%%", 100*(now/was-1))
}
