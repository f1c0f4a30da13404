package bench

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
)

// TestTransfersWorkload_Target: the p99 target reads the open loop nearest
// 80% of the peak, and MetUpTo is the highest share of the peak up to which
// every open loop met 50 ms with every request served, whatever order they
// ran in.
func TestTransfersWorkload_Target(t *testing.T) {
	ms := time.Millisecond
	open := func(rate float64, p99 time.Duration) load.Result {
		return load.Result{Offered: rate, OK: 100, P99: p99}
	}
	w := transfersWorkload{
		Holdfast: []load.Result{{Throughput: 6_000}, {Throughput: 10_000}},
		Open:     []load.Result{open(8_000, 45*ms), open(5_000, 20*ms), open(6_000, 50*ms), open(7_000, 70*ms)},
	}
	if got := w.TargetOpen().Offered; got != 8_000 {
		t.Errorf("TargetOpen at %v/s, want the one at 80%% of the peak, 8000/s", got)
	}
	if got := w.MetUpTo(); got != 0.6 {
		t.Errorf("MetUpTo %v, want 0.6 (7,000/s missed, so 8,000/s's pass does not count)", got)
	}

	w.Open = []load.Result{open(5_000, 51*ms), open(4_000, 10*ms)}
	if got := w.TargetOpen().Offered; got != 5_000 {
		t.Errorf("TargetOpen at %v/s, want the nearest to 8,000/s, 5000/s", got)
	}
	if got := w.MetUpTo(); got != 0.4 {
		t.Errorf("MetUpTo %v, want 0.4", got)
	}

	// A loop whose p99 is low because requests were shed, or never sent,
	// does not meet the target: its p99 is that of the survivors.
	shed, unsent := open(4_000, 10*ms), open(4_000, 10*ms)
	shed.Failed, unsent.Errors = 1, 1
	for _, bad := range []load.Result{shed, unsent} {
		w.Open = []load.Result{open(3_000, 10*ms), bad, open(5_000, 20*ms)}
		if got := w.MetUpTo(); got != 0.3 {
			t.Errorf("MetUpTo %v with a loop at 4,000/s that had %d not ok and %d errors, want 0.3", got, bad.Failed, bad.Errors)
		}
	}

	w.Open = []load.Result{{Offered: 3_000, P99: 0}} // nothing succeeded: a p99 of 0 is no pass
	if got := w.MetUpTo(); got != 0 {
		t.Errorf("MetUpTo %v with no successful request, want 0", got)
	}
	w.Open = nil
	if got, f := w.TargetOpen(), w.MetUpTo(); got.Offered != 0 || f != 0 {
		t.Errorf("no open loop: TargetOpen %+v, MetUpTo %v; want zero", got, f)
	}
}

// checkResult fails tb unless r is consistent with itself (see Result.Check).
func checkResult(tb testing.TB, r load.Result) {
	tb.Helper()
	if err := r.Check(); err != nil {
		tb.Error(err)
	}
}

// MustHoldfast serves Holdfast's API over db and returns its URL.
func MustHoldfast(tb testing.TB, db *postgres.DB) string { return apitest.MustServe(tb, db).URL() }

// TestBenchTransfers runs the whole transfer benchmark at a tiny scale:
// both workloads, every server answers, no transport error, the table is
// printed, and the ledger holds its invariants afterwards.
func TestBenchTransfers(t *testing.T) {
	t.Parallel()
	db, tenant, secret := setup(t)
	naiveSrv := httptest.NewServer(&naive.Ledger{Pool: db.Pool, Tenant: tenant, Events: true})
	t.Cleanup(naiveSrv.Close)
	ws, err := runTransfers(context.Background(), transfersConfig{
		Pool: db.Pool, Tenant: tenant, HoldfastURL: MustHoldfast(t, db), APIKey: secret, NaiveURL: naiveSrv.URL,
		Accounts: 50, Concurrency: []int{4}, Duration: 300 * time.Millisecond, OpenWarmup: 100 * time.Millisecond, Progress: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Name != "uniform" || ws[1].Name != "hot" {
		t.Fatalf("workloads %+v, want uniform and hot", ws)
	}
	for _, w := range ws {
		if len(w.Holdfast) != 1 || len(w.Naive) != 1 {
			t.Fatalf("%s: %d holdfast and %d naive runs, want 1 each (one concurrency)", w.Name, len(w.Holdfast), len(w.Naive))
		}
		for _, r := range []load.Result{w.Holdfast[0], w.Naive[0], w.Ceiling} {
			checkResult(t, r)
			if r.OK == 0 || r.Errors != 0 {
				t.Errorf("%s, %s: OK %d, Errors %d; want OK > 0, no error", w.Name, r.Name, r.OK, r.Errors)
			}
		}
		if len(w.Open) != 1 {
			t.Fatalf("%s: %d open loops, want 1 (at 80%% of the peak, the default)", w.Name, len(w.Open))
		}
		checkResult(t, w.Open[0])
		if want := 0.8 * load.Peak(w.Holdfast).Throughput; w.Open[0].Offered != want || w.TargetOpen().Offered != want {
			t.Errorf("%s: open loop offered %v/s (target's %v/s), want 80%% of the peak, %v/s", w.Name, w.Open[0].Offered, w.TargetOpen().Offered, want)
		}
		if len(w.OpenWarm) != 1 {
			t.Fatalf("%s: %d warm-ups, want 1 (one open loop)", w.Name, len(w.OpenWarm))
		}
		// The machine's CPU is read for each measured run (from the end of
		// the open loop's warm-up), never for the warm-up alone.
		for _, r := range []load.Result{w.Holdfast[0], w.Naive[0], w.Ceiling, w.Open[0]} {
			if !(r.CPUBusy > 0 && r.CPUBusy <= 1) {
				t.Errorf("%s, %s: CPU busy %v, want a share in (0, 1]", w.Name, r.Name, r.CPUBusy)
			}
		}
		warm := w.OpenWarm[0]
		if warm.CPUBusy != 0 {
			t.Errorf("%s: the warm-up's CPU busy %v, want none measured", w.Name, warm.CPUBusy)
		}
		checkResult(t, warm)
		if warm.Sent == 0 || warm.OK != warm.Sent || warm.Offered != w.Open[0].Offered {
			t.Errorf("%s: warm-up sent %d, OK %d at %v/s; want every request answered, at the loop's rate %v/s", w.Name, warm.Sent, warm.OK, warm.Offered, w.Open[0].Offered)
		}
	}
	var out bytes.Buffer
	printTransfers(&out, ws)
	for _, want := range []string{"uniform workload", "hot workload", "holdfast/naive", "holdfast c=4", "naive c=4", "raw SQL", ", warm-up", "not counted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printTransfers lacks %q:\n%s", want, out.String())
		}
	}
	dbtest.MustVerify(t, db, tenant)
	io.WriteString(t.Output(), out.String())
}

// TestBenchTransfers_OpenLoopNotCappedByConcurrency: the open loop's
// outstanding requests do not depend on the closed loops' client counts. With
// one client the generator used to allow 4 requests in flight, so an open
// loop at 1,000/s, whose requests take longer than 4 ms here, counted most of
// its requests as not sent.
func TestBenchTransfers_OpenLoopNotCappedByConcurrency(t *testing.T) {
	t.Parallel()
	db, tenant, secret := setup(t)
	ws, err := runTransfers(context.Background(), transfersConfig{
		Pool: db.Pool, Tenant: tenant, HoldfastURL: MustHoldfast(t, db), APIKey: secret,
		Accounts: 50, Concurrency: []int{1}, Duration: 300 * time.Millisecond, OpenRate: 1000,
		Workloads: []string{"uniform"}, SkipNaive: true, Progress: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || len(ws[0].Open) != 1 {
		t.Fatalf("workloads %+v, want uniform with one open loop", ws)
	}
	o := ws[0].Open[0]
	checkResult(t, o)
	if len(ws[0].OpenWarm) != 1 || ws[0].OpenWarm[0].Sent != 0 {
		t.Errorf("warm-ups %+v, want one that sent nothing (no OpenWarmup)", ws[0].OpenWarm)
	}
	if o.Errors != 0 || o.OK != o.Sent || o.Sent == 0 {
		t.Errorf("open loop at 1,000/s with one closed-loop client: sent %d, OK %d, errors %d; want every request sent and answered", o.Sent, o.OK, o.Errors)
	}
	dbtest.MustVerify(t, db, tenant)
}
