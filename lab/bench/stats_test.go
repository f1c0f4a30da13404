package bench

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab/naive"
)

// The line `holdfast-lab bench transfers` prints after each Holdfast run counts
// what the relay did during that run alone. The call made before a run to
// reset the counts must move every baseline even when no batch ran since
// the call before: the naive server's events, relayed while the benchmark
// drained the log between runs, are not the next run's.
func TestBatchStats_ResetCoversTheEvents(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	m := apptest.MustStart(t, db)
	c := apptest.Admin(m).MustTenant(t, "stats")
	house := c.MustAccount(t, "EUR", true)
	alice := c.MustAccount(t, "EUR", false)
	ctx := context.Background()
	stats := batchStats(m)
	stats()

	// One event written outside group commit, as the naive server does.
	naiveSrv := httptest.NewServer(&naive.Ledger{Pool: dbtest.MustPool(t, db), Tenant: c.Tenant, Events: true})
	t.Cleanup(naiveSrv.Close)
	(&apitest.Client{URL: naiveSrv.URL}).Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 5, "EUR"), "Idempotency-Key", "naive-1").MustStatus(t, 201)
	if err := m.DrainEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stats(); got != "no batches" {
		t.Fatalf("reset: %q, want \"no batches\"", got)
	}

	// One Holdfast transfer: one batch, one event.
	c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 7, "EUR")).MustStatus(t, 201)
	if err := m.DrainEvents(ctx); err != nil {
		t.Fatal(err)
	}
	got := stats()
	for _, want := range []string{"group commit: 1 batches, mean 1.0 requests", "ms in the queue on average", "relayed meanwhile: 1 events in 1 stream messages"} {
		if !strings.Contains(got, want) {
			t.Errorf("after one transfer: %q, want it to contain %q", got, want)
		}
	}
}
