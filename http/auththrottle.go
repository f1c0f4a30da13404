package http

import (
	clist "container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// authThrottle limits failed authentications per client address: each
// address has a bucket of burst failures that refills at rate per second
// (GCRA, one time per address). It remembers at most capacity addresses,
// least recently failing first out, so a flood of addresses cannot grow it;
// an address that has earned its whole burst back is the same as one never
// seen and is dropped as soon as it is found.
type authThrottle struct {
	interval  time.Duration // one failure earned back
	tolerance time.Duration // burst × interval
	capacity  int
	now       func() time.Time

	mu    sync.Mutex
	m     map[netip.Addr]*clist.Element // of *throttled
	order clist.List                    // front: the latest failure
}

type throttled struct {
	addr netip.Addr
	tat  time.Time // GCRA's theoretical arrival time of the next failure
}

func newAuthThrottle(burst int, rate float64, capacity int) *authThrottle {
	interval := time.Duration(float64(time.Second) / rate)
	return &authThrottle{interval: interval, tolerance: time.Duration(burst) * interval,
		capacity: capacity, now: time.Now, m: make(map[netip.Addr]*clist.Element)}
}

// retryAfter returns how long addr must wait before it may try to
// authenticate again; 0 if it may now.
func (t *authThrottle) retryAfter(addr netip.Addr) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[addr]
	if !ok {
		return 0
	}
	tat := e.Value.(*throttled).tat
	if !tat.After(now) {
		t.remove(e)
		return 0
	}
	if allowAt := tat.Add(t.interval - t.tolerance); allowAt.After(now) {
		return allowAt.Sub(now)
	}
	return 0
}

// fail counts one failed authentication of addr.
func (t *authThrottle) fail(addr netip.Addr) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[addr]
	if !ok {
		e = t.order.PushFront(&throttled{addr: addr})
		t.m[addr] = e
	} else {
		t.order.MoveToFront(e)
	}
	th := e.Value.(*throttled)
	th.tat = maxTime(th.tat, now).Add(t.interval)
	for t.order.Len() > t.capacity {
		t.remove(t.order.Back())
	}
	// The oldest entries have most likely earned their burst back.
	for b := t.order.Back(); b != nil && !b.Value.(*throttled).tat.After(now); b = t.order.Back() {
		t.remove(b)
	}
}

// remove forgets an address; t.mu is held.
func (t *authThrottle) remove(e *clist.Element) {
	t.order.Remove(e)
	delete(t.m, e.Value.(*throttled).addr)
}

// size returns how many addresses are remembered.
func (t *authThrottle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clientAddress returns the throttle's key for a request's peer: its
// address, or for IPv6 its /64, since one host commonly holds a whole /64.
// The peer is the connection's; behind a proxy it is the proxy's.
func clientAddress(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{} // not an IP address (a test's handler): one shared budget
	}
	return clientKey(addr)
}

// clientKey returns the key of a client address (see clientAddress).
func clientKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}
