package http

import (
	"net/netip"
	"testing"
	"time"
)

// TestAuthThrottle_MemoryStaysBounded: a flood of failing addresses never
// holds more than the throttle's capacity, and an address throttled before
// the flood stays throttled while fewer than that many others have failed
// since.
func TestAuthThrottle_MemoryStaysBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	th := newAuthThrottle(2, 0.001, 100)
	th.now = func() time.Time { return now }

	attacker := netip.MustParseAddr("192.0.2.1")
	th.fail(attacker)
	th.fail(attacker)
	if th.retryAfter(attacker) <= 0 {
		t.Fatal("an address that used its burst of failures is not throttled")
	}
	for i := range 50 {
		th.fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if th.retryAfter(attacker) <= 0 {
		t.Fatal("a throttled address was forgotten after 50 others failed, with room for 100")
	}
	for i := range 100_000 {
		th.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if n := th.size(); n > 100 {
			t.Fatalf("the throttle holds %d addresses after %d failing ones, want at most 100", n, i+1)
		}
	}
	if d := th.retryAfter(netip.MustParseAddr("192.0.2.2")); d != 0 {
		t.Fatalf("an address that never failed must wait %v", d)
	}
}

// TestAuthThrottle_Refill: a throttled address may fail again once a
// refill interval has passed, and an IPv6 client's whole /64 shares one
// budget (one host has many addresses in it).
func TestAuthThrottle_Refill(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	th := newAuthThrottle(2, 1, 100) // one failure back per second
	th.now = func() time.Time { return now }
	a := clientKey(netip.MustParseAddr("2001:db8::1"))
	b := clientKey(netip.MustParseAddr("2001:db8::ffff:2"))
	th.fail(a)
	th.fail(b)
	if d := th.retryAfter(a); d != time.Second {
		t.Fatalf("retry after %v, want 1s", d)
	}
	now = now.Add(time.Second)
	if d := th.retryAfter(a); d != 0 {
		t.Fatalf("after one interval: retry after %v, want 0", d)
	}
	if c := clientKey(netip.MustParseAddr("2001:db8:0:1::1")); c == a {
		t.Fatal("another /64 shares the budget")
	}
}
