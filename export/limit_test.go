package export_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/holdfast/holdfast/export"
)

func TestLimiter(t *testing.T) {
	l := export.NewLimiter(3, 2)
	for i := range 2 {
		if !l.TryAcquire("a") {
			t.Fatalf("a tenant's slot %d of 2 refused", i+1)
		}
	}
	if l.TryAcquire("a") {
		t.Fatal("a third slot for one tenant")
	}
	if !l.TryAcquire("b") {
		t.Fatal("another tenant gets the last slot")
	}
	if l.TryAcquire("c") {
		t.Fatal("more than the process total")
	}
	l.Release("a")
	if !l.TryAcquire("c") {
		t.Fatal("a released slot is free again")
	}
	l.Release("a")
	l.Release("b")
	l.Release("c")
	if l.Active() != 0 {
		t.Fatalf("active = %d after releasing all", l.Active())
	}
}

// TestLimiterConcurrent checks the caps hold under contention.
func TestLimiterConcurrent(t *testing.T) {
	const total, perTenant = 5, 2
	l := export.NewLimiter(total, perTenant)
	var active atomic.Int64
	var perT [4]atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := string(rune('a' + g%4))
			for range 1000 {
				if !l.TryAcquire(tenant) {
					continue
				}
				if n := active.Add(1); n > total {
					t.Errorf("%d active, cap %d", n, total)
				}
				if n := perT[g%4].Add(1); n > perTenant {
					t.Errorf("tenant %s has %d, cap %d", tenant, n, perTenant)
				}
				perT[g%4].Add(-1)
				active.Add(-1)
				l.Release(tenant)
			}
		}()
	}
	wg.Wait()
	if l.Active() != 0 {
		t.Fatalf("active = %d at the end", l.Active())
	}
}
