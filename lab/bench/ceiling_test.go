package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/dbtest"
)

// TestRawBatch_SkipsOverdraws: a transfer that would overdraw an account
// without overdraft is skipped, judged on the balance left by the batch's
// earlier transfers.
func TestRawBatch_SkipsOverdraws(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	a := MustSeed(t, db, tenant, 5, 1_000, false)
	if err := prepareCeiling(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	batch := []rawTransfer{
		{Key: "k1", Debit: a[0], Credit: a[1], Amount: 600},
		{Key: "k2", Debit: a[0], Credit: a[1], Amount: 600},  // 400 left: skipped
		{Key: "k3", Debit: a[1], Credit: a[2], Amount: 1500}, // 1600 after k1
		{Key: "k4", Debit: a[3], Credit: a[4], Amount: 1001}, // skipped
	}
	n, err := rawBatch(context.Background(), db.Pool, tenant, "USD", batch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("rawBatch applied %d of %d, want 2", n, len(batch))
	}
	for i, want := range []int64{400, 100, 2500, 1000, 1000} {
		if got := dbtest.Balance(t, db, a[i]); got != want {
			t.Errorf("account %d: balance %d, want %d", i, got, want)
		}
	}
	if got := dbtest.LedgerRows(t, db, tenant); got != [3]int64{5 + 2, 2*5 + 2*2, 2} {
		t.Errorf("transfers, entries, keys = %v, want [7 14 2]", got)
	}
	dbtest.MustVerify(t, db, tenant)
}

// TestRawBatch_Concurrent: two goroutines apply batches on the same
// accounts, in any order within a batch, without deadlock, and every
// transfer counted as applied is stored.
func TestRawBatch_Concurrent(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	const nAccounts, goroutines, batches, size = 6, 2, 10, 100
	a := MustSeed(t, db, tenant, nAccounts, 1_000, false)
	if err := prepareCeiling(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	var applied, skipped int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for b := range batches {
				batch := make([]rawTransfer, size)
				for i := range batch {
					d := rng.IntN(nAccounts)
					batch[i] = rawTransfer{Key: fmt.Sprintf("raw-%d-%d-%d", g, b, i), Debit: a[d],
						Credit: a[(d+1+rng.IntN(nAccounts-1))%nAccounts], Amount: int64(1 + rng.IntN(500))}
				}
				n, err := rawBatch(context.Background(), db.Pool, tenant, "USD", batch)
				if err != nil {
					t.Errorf("batch %d of goroutine %d: %v", b, g, err)
					continue
				}
				mu.Lock()
				applied, skipped = applied+int64(n), skipped+int64(size-n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	dbtest.MustVerify(t, db, tenant)
	if applied == 0 || skipped == 0 {
		t.Errorf("%d applied, %d skipped: want both (amounts up to 500 on balances of about 1000)", applied, skipped)
	}
	if made := dbtest.TransfersMade(t, db, tenant); made != applied {
		t.Errorf("%d transfers stored, rawBatch reported %d", made, applied)
	}
}
