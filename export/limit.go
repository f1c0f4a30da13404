package export

import (
	"sync"
)

// Limiter caps concurrent exports per process and per tenant. It never
// waits: TryAcquire says no at once, so a caller can answer 429.
type Limiter struct {
	total, perTenant int

	mu       sync.Mutex
	active   int
	byTenant map[string]int
}

// NewLimiter returns a limiter of total slots, at most perTenant of them
// held by one tenant. Both must be positive.
func NewLimiter(total, perTenant int) *Limiter {
	return &Limiter{total: total, perTenant: perTenant, byTenant: make(map[string]int)}
}

// TryAcquire takes a slot for tenant and reports whether it got one. Each
// true must be paired with one Release.
func (l *Limiter) TryAcquire(tenant string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active >= l.total || l.byTenant[tenant] >= l.perTenant {
		return false
	}
	l.active++
	l.byTenant[tenant]++
	return true
}

// Release returns a slot taken by TryAcquire.
func (l *Limiter) Release(tenant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byTenant[tenant] <= 1 {
		delete(l.byTenant, tenant) // the map holds only tenants exporting now
	} else {
		l.byTenant[tenant]--
	}
	l.active--
}

// Active returns how many slots are held.
func (l *Limiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}
