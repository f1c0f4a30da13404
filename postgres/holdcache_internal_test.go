package postgres

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast"
)

// The cache remembers holds only, per tenant, at most holdCacheSize of
// them, forgetting the oldest first and a resolved one at once.
func TestHoldCache_RemembersHoldsWithinItsBound(t *testing.T) {
	var c holdCache
	hold := func(i int) *holdfast.Transfer {
		return &holdfast.Transfer{TenantID: "t1", ID: fmt.Sprint(i), DebitAccountID: "d", CreditAccountID: "c", Currency: "USD", Amount: int64(i + 1), Pending: true}
	}
	c.add([]*holdfast.Transfer{hold(0), {TenantID: "t1", ID: "posted", Amount: 5}})
	if h, ok := c.get("t1", "0"); !ok || h.Amount != 1 || h.DebitAccountID != "d" || h.CreditAccountID != "c" || h.Currency != "USD" || !h.Pending {
		t.Fatalf("hold 0: %+v, %v", h, ok)
	}
	if _, ok := c.get("t2", "0"); ok {
		t.Error("another tenant's hold is remembered under its id")
	}
	if _, ok := c.get("t1", "posted"); ok {
		t.Error("a transfer that is no hold is remembered")
	}
	for i := 1; i < holdCacheSize+10; i++ {
		c.add([]*holdfast.Transfer{hold(i)})
	}
	if len(c.holds) != holdCacheSize || len(c.ring) != holdCacheSize {
		t.Fatalf("%d holds in a ring of %d, want %d", len(c.holds), len(c.ring), holdCacheSize)
	}
	for _, i := range []int{0, 9} {
		if _, ok := c.get("t1", fmt.Sprint(i)); ok {
			t.Errorf("hold %d, among the oldest, is still remembered", i)
		}
	}
	last := fmt.Sprint(holdCacheSize + 9)
	if _, ok := c.get("t1", last); !ok {
		t.Fatal("the newest hold is forgotten")
	}
	c.forget("t1", last)
	if _, ok := c.get("t1", last); ok {
		t.Error("a resolved hold is still remembered")
	}
}
