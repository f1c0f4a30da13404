package postgres

import (
	"sync"

	"github.com/holdfast/holdfast"
)

// flight is a group-commit batch being committed, as the batches formed
// after it see it. Once it is ready — it holds the row locks of its accounts
// and knows the balances it will commit — a later batch may take requests on
// the same accounts and apply them against those balances: that pipelined
// batch reads, applies and writes everything but the balances and entries
// while this one commits, and locks the accounts last, which waits for this
// commit. Under the locks it checks that the balances are the ones it
// applied against; if this batch failed instead, they are not, and the
// pipelined one runs again the ordinary way. So a hot account is locked
// for a batch's balance updates, entries and commit, not for its whole
// work, and the check, not the pipelining, is what keeps the ledger right.
type flight struct {
	accounts map[string]struct{} // the accounts the batch touches
	after    map[string]*flight  // of those, the ones a ready batch held when this one formed: that batch
	holds    []string            // the holds it resolves
	signal   func()              // wakes the writer's committers once ready; nil: nothing to wake
	stale    bool                // the pipelined attempt found other balances and the batch ran again

	once    sync.Once
	readyCh chan struct{}
	final   map[string]*holdfast.AccountState // the balances the batch commits; set before readyCh closes
}

func newFlight(signal func()) *flight {
	return &flight{accounts: map[string]struct{}{}, after: map[string]*flight{}, signal: signal, readyCh: make(chan struct{})}
}

// pipelines reports whether the batch took accounts from a batch still
// committing, so that its first attempt is pipelined.
func (f *flight) pipelines() bool { return f != nil && len(f.after) > 0 }

// ready records the balances the batch will commit (a copy of accounts,
// applied and locked) and lets later batches pipeline behind it. Only the
// first call counts; a nil flight (outside the writer) ignores it.
func (f *flight) ready(accounts map[string]*holdfast.AccountState) {
	if f == nil {
		return
	}
	f.once.Do(func() {
		f.final = make(map[string]*holdfast.AccountState, len(accounts))
		for id, a := range accounts {
			c := *a
			f.final[id] = &c
		}
		close(f.readyCh)
		if f.signal != nil {
			f.signal()
		}
	})
}

// isReady reports whether ready was called.
func (f *flight) isReady() bool {
	select {
	case <-f.readyCh:
		return true
	default:
		return false
	}
}
