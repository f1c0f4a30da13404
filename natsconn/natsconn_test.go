package natsconn_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// mustOpen opens cfg and closes the connection when the test ends.
func mustOpen(t *testing.T, cfg natsconn.Config) *natsconn.Conn {
	t.Helper()
	c, err := natsconn.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// mustPing fails t unless c answers a round trip. It gives Ping a deadline,
// as /readyz does; TestPingWithoutDeadline covers a context without one.
func mustPing(t *testing.T, c *natsconn.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestOpenEmbedded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := mustOpen(t, natsconn.Config{StoreDir: t.TempDir()})
	mustPing(t, c)
	if !c.Embedded() {
		t.Error("Embedded() = false without a URL")
	}
	if _, err := c.JS.AccountInfo(ctx); err != nil {
		t.Fatalf("AccountInfo: %v", err)
	}

	if _, err := c.JS.CreateStream(ctx, njs.StreamConfig{Name: "TEST", Subjects: []string{"test.>"}}); err != nil {
		t.Fatal(err)
	}
	ack, err := c.JS.Publish(ctx, "test.hello", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != "TEST" || ack.Sequence != 1 {
		t.Fatalf("ack = %+v, want stream TEST sequence 1", ack)
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, "TEST", njs.ConsumerConfig{Durable: "reader", AckPolicy: njs.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, njs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for msg := range batch.Messages() {
		got = append(got, msg.Subject()+" "+string(msg.Data()))
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Error(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "test.hello hello" {
		t.Fatalf("fetched %q, want the one message published", got)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("consumer pending %d, ack pending %d after the ack; want 0, 0", info.NumPending, info.NumAckPending)
	}
}

// Ping takes the caller's context; one without a deadline must still get a
// round trip (under a default timeout), not a refusal.
func TestPingWithoutDeadline(t *testing.T) {
	t.Parallel()
	c := mustOpen(t, natsconn.Config{StoreDir: t.TempDir()})
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping(context without deadline): %v", err)
	}
}

func TestOpenEmbeddedKeepsStreams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := mustOpen(t, natsconn.Config{StoreDir: dir})
	if _, err := first.JS.CreateStream(t.Context(), njs.StreamConfig{Name: "KEPT", Subjects: []string{"kept.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.JS.Publish(t.Context(), "kept.one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	first.Close() // the server must let go of the store before it is reopened

	again := mustOpen(t, natsconn.Config{StoreDir: dir})
	stream, err := again.JS.Stream(t.Context(), "KEPT")
	if err != nil {
		t.Fatalf("stream after reopening the store: %v", err)
	}
	if n := stream.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages after reopening, want 1", n)
	}
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	c, err := natsconn.Open(t.Context(), natsconn.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	if err := c.Ping(t.Context()); err == nil {
		t.Error("Ping after Close = nil, want an error")
	}
}

func TestOpenWithoutStoreDir(t *testing.T) {
	t.Parallel()
	c, err := natsconn.Open(t.Context(), natsconn.Config{})
	if err == nil {
		c.Close()
		t.Fatal("Open without URL or StoreDir = nil error")
	}
	if !strings.Contains(err.Error(), "StoreDir") {
		t.Errorf("error %q does not name StoreDir", err)
	}
}

func TestOpenExternal(t *testing.T) {
	t.Parallel()
	c := mustOpen(t, natsconn.Config{URL: natstest.ExternalURL(t), Name: "holdfast-test"})
	if c.Embedded() {
		t.Error("Embedded() = true with a URL")
	}
	mustPing(t, c)
}

func TestOpenClosedPort(t *testing.T) {
	t.Parallel()
	type result struct {
		c   *natsconn.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := natsconn.Open(context.Background(), natsconn.Config{URL: "nats://127.0.0.1:1"})
		done <- result{c, err}
	}()
	// A guard against a hang, not a measure of speed.
	select {
	case r := <-done:
		if r.err == nil {
			r.c.Close()
			t.Fatal("Open against a closed port = nil error")
		}
		if !strings.Contains(r.err.Error(), "127.0.0.1:1") {
			t.Errorf("error %q does not name the URL", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open against a closed port did not return")
	}
}

// TestOpenEmbedded_ClientPort: with Listen, the embedded server takes TCP
// clients (the nats CLI), which see the streams Holdfast made.
func TestOpenEmbedded_ClientPort(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := mustOpen(t, natsconn.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if _, err := c.JS.CreateStream(ctx, njs.StreamConfig{Name: "SEEN", Subjects: []string{"seen.>"}}); err != nil {
		t.Fatal(err)
	}
	u := c.ClientURL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") {
		t.Fatalf("ClientURL %q, want nats://127.0.0.1:<the port taken>", u)
	}
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatalf("connect over TCP to %s: %v", u, err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "SEEN"); err != nil {
		t.Fatalf("stream info over TCP: %v", err)
	}
}

// TestOpenEmbedded_NoClientPortByDefault: without Listen the server has no
// TCP port at all.
func TestOpenEmbedded_NoClientPortByDefault(t *testing.T) {
	t.Parallel()
	if u := mustOpen(t, natsconn.Config{StoreDir: t.TempDir()}).ClientURL(); u != "" {
		t.Fatalf("ClientURL %q without Listen, want none", u)
	}
}

// TestOpenEmbedded_ClientPortInUse: a port that is taken is an error naming
// it, not a server that never becomes ready.
func TestOpenEmbedded_ClientPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := natsconn.Open(t.Context(), natsconn.Config{StoreDir: t.TempDir(), Listen: ln.Addr().String()})
	if err == nil {
		c.Close()
		t.Fatal("Open on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Open on a port in use: %v, want an error naming %s in use", err, ln.Addr())
	}
}
