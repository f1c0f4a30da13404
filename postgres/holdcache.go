package postgres

import (
	"sync"

	"github.com/holdfast/holdfast"
)

// holdCacheSize bounds the holds a service remembers: at about 400 bytes
// each (the map's entry, its key in the ring), 16,384 holds take some 6 MB. A hold made longer ago than the last
// 16,384 (a card authorisation captured days later) is read from the
// database instead.
const holdCacheSize = 16384

// holdFacts is what never changes about a hold and what its resolution
// needs before it is sent to a batch: the accounts to lock, the currency
// and the amount a post of 0 takes.
type holdFacts struct {
	debit, credit, currency string
	amount                  int64
}

// holdCache remembers the holds this service made, so that their
// resolution skips the snapshot read of the hold (one query and a round
// trip, a third of a resolution's cost outside its batch). It holds only
// what never changes, and only holds whose batch committed, so a
// remembered hold is always right; whether it may still be posted or voided
// is decided, as for any resolution, by the batch that reads it under its
// accounts' locks. The oldest hold is forgotten first. Safe for concurrent
// use; the zero value is empty and ready.
type holdCache struct {
	mu    sync.Mutex
	holds map[holdfast.TransferKey]holdFacts
	ring  []holdfast.TransferKey // insertion order, overwritten from next once full
	next  int
}

// add remembers the holds among ts.
func (c *holdCache) add(ts []*holdfast.Transfer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range ts {
		if !t.Pending {
			continue
		}
		if c.holds == nil {
			c.holds = make(map[holdfast.TransferKey]holdFacts)
		}
		k := holdfast.TransferKey{TenantID: t.TenantID, ID: t.ID}
		if len(c.ring) < holdCacheSize {
			c.ring = append(c.ring, k)
		} else {
			delete(c.holds, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % holdCacheSize
		}
		c.holds[k] = holdFacts{debit: t.DebitAccountID, credit: t.CreditAccountID, currency: t.Currency, amount: t.Amount}
	}
}

// get returns the hold (tenantID, id), as a transfer with its facts only,
// if this service made it and still remembers it.
func (c *holdCache) get(tenantID, id string) (*holdfast.Transfer, bool) {
	c.mu.Lock()
	f, ok := c.holds[holdfast.TransferKey{TenantID: tenantID, ID: id}]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return &holdfast.Transfer{TenantID: tenantID, ID: id, DebitAccountID: f.debit, CreditAccountID: f.credit,
		Currency: f.currency, Amount: f.amount, Pending: true}, true
}

// forget drops a hold once it is resolved: its slot in the ring is reused
// in turn.
func (c *holdCache) forget(tenantID, id string) {
	c.mu.Lock()
	delete(c.holds, holdfast.TransferKey{TenantID: tenantID, ID: id})
	c.mu.Unlock()
}
