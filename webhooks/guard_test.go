package webhooks_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhooks"
)

func TestForbidden(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "127.1.2.3", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"fe80::1", "fc00::1", "fd12::1", "0.0.0.0", "::", "100.64.0.1", "224.0.0.1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"240.0.0.1", "198.18.0.1"} {
		if !webhooks.Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is allowed", s)
		}
	}
	for _, s := range []string{"93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"} {
		if webhooks.Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is forbidden", s)
		}
	}
}

// TestDeliver_RefusesPrivateAddressesAtConnectTime: without AllowPrivate,
// an endpoint whose name resolves to loopback (localhost), or that names
// loopback, a private or a metadata address, is refused when connecting:
// the receiver on loopback gets nothing, and the attempt says refused.
func TestDeliver_RefusesPrivateAddressesAtConnectTime(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rcv.URL, "http://"))
	urls := []string{"http://localhost:" + port + "/hook", rcv.URL, "http://[::1]:" + port, "http://169.254.169.254/latest/meta-data",
		"http://10.255.255.1:" + port}
	var eps []*holdfast.WebhookEndpoint
	for _, u := range urls {
		eps = append(eps, f.endpoint(t, u))
	}
	f.publish(t, "transfer.posted")
	d := f.dispatcher(t, func(c *webhooks.Config) { c.AllowPrivate = false; c.Timeout = 2 * time.Second })
	if n := f.runOnce(t, d); n != len(urls) {
		t.Fatalf("%d attempts, want %d", n, len(urls))
	}
	if got := rcv.requests(); len(got) != 0 {
		t.Fatalf("the loopback receiver got %d requests", len(got))
	}
	for i, ep := range eps {
		as := f.attempts(t, ep.ID)
		if len(as) != 1 || as[0].Result != holdfast.WebhookRefused || as[0].NextAttemptAt == nil {
			t.Errorf("%s: attempts %+v, want one refused, to be retried", urls[i], as)
		}
	}
}
