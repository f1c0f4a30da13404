package webhooks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrForbiddenAddress is returned when an endpoint's host resolves to an
// address endpoints may not use.
var ErrForbiddenAddress = errors.New("webhooks: the endpoint resolves to a forbidden address")

// forbidden are the prefixes an endpoint may not reach besides those
// netip classifies (loopback, private, link-local, unspecified,
// multicast): shared address space, the IPv4 "this network", benchmarking
// and reserved ranges, NAT64 and the IPv6 documentation prefix.
var forbidden = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// Forbidden reports whether an endpoint may not connect to ip: loopback,
// private, link-local (the cloud metadata service, 169.254.169.254, among
// them), unspecified, multicast or reserved.
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range forbidden {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guardedDialer returns a dialer that checks every address it connects to,
// after DNS resolution and just before connecting, so that a name that
// resolves to a public address when checked and a private one when used
// (DNS rebinding) is refused too. allowPrivate turns the check off
// (development and tests).
func guardedDialer(d net.Dialer, allowPrivate bool) *net.Dialer {
	if allowPrivate {
		return &d
	}
	d.Control = func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
		}
		if Forbidden(ap.Addr()) {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
		}
		return nil
	}
	return &d
}
