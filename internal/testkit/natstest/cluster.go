package natstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of nats-server processes of a test's own,
// clustered by routes on loopback; a node may be killed and started again
// on the same ports with the same files.
type Cluster struct {
	Nodes []*Server // node i runs as server name "n<i>"
	tb    testing.TB
}

// StartCluster starts n nats-server processes (built by Built: the
// version go.mod requires) with JetStream, each with its own store
// directory, clustered by routes on free ports, and waits until
// JetStream has a meta leader. The cluster stops when tb ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: a cluster of %d nodes", n)
	}
	bin := Built(tb)
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "nats-route://" + freeAddr(tb)
	}
	c := &Cluster{tb: tb}
	for i := range n {
		dir := tb.TempDir()
		s := &Server{tb: tb, bin: bin, dir: dir, addr: freeAddr(tb), args: []string{
			"-n", fmt.Sprintf("n%d", i), "--cluster_name", "holdfast-test",
			"--cluster", strings.Replace(routes[i], "nats-route://", "nats://", 1),
			"--routes", strings.Join(routes, ","),
		}}
		s.URL = "nats://" + s.addr
		tb.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	for _, s := range c.Nodes {
		s.Start()
	}
	c.WaitReady()
	return c
}

// URLs returns the client URLs of every node, comma-separated, as
// --nats-url takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL
	}
	return strings.Join(urls, ",")
}

// Kill kills node i with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(i int) { c.Nodes[i].Stop() }

// Start starts node i again, on its ports and with its files.
func (c *Cluster) Start(i int) { c.Nodes[i].Start() }

// WaitReady waits until the cluster's JetStream answers (it has a meta
// leader), failing the test after a minute.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	nc, js := c.connect()
	defer nc.Close()
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
	}
	c.tb.Fatalf("natstest: the cluster's JetStream never answered: %v\n%s", err, c.logs())
}

// StreamInfo returns the stream's information as the cluster gives it now.
func (c *Cluster) StreamInfo(name string) (*njs.StreamInfo, error) {
	nc, js := c.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// ConsumerInfo returns the durable consumer's information.
func (c *Cluster) ConsumerInfo(stream, name string) (*njs.ConsumerInfo, error) {
	nc, js := c.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return cons.CachedInfo(), nil
}

// StreamLeader returns the index of the node that leads the stream's
// replicas, failing the test when the stream has no leader.
func (c *Cluster) StreamLeader(name string) int {
	c.tb.Helper()
	info, err := c.StreamInfo(name)
	if err != nil {
		c.tb.Fatalf("natstest: stream %s: %v", name, err)
	}
	return c.node(info.Cluster, "stream "+name)
}

// ConsumerLeader returns the index of the node that leads the durable
// consumer's replicas, failing the test when it has no leader.
func (c *Cluster) ConsumerLeader(stream, name string) int {
	c.tb.Helper()
	info, err := c.ConsumerInfo(stream, name)
	if err != nil {
		c.tb.Fatalf("natstest: consumer %s: %v", name, err)
	}
	return c.node(info.Cluster, "consumer "+name)
}

// node returns the index of the node that leads a group of replicas.
func (c *Cluster) node(info *njs.ClusterInfo, what string) int {
	c.tb.Helper()
	var i int
	if info == nil {
		c.tb.Fatalf("natstest: %s has no cluster information", what)
	} else if _, err := fmt.Sscanf(info.Leader, "n%d", &i); err != nil || i < 0 || i >= len(c.Nodes) {
		c.tb.Fatalf("natstest: %s is led by %q", what, info.Leader)
	}
	return i
}

func (c *Cluster) connect() (*nats.Conn, njs.JetStream) {
	c.tb.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		c.tb.Fatalf("natstest: connect %s: %v", c.URLs(), err)
	}
	js, err := njs.New(nc)
	if err != nil {
		nc.Close()
		c.tb.Fatal(err)
	}
	return nc, js
}

// logs returns the nodes' logs, for a failure's message.
func (c *Cluster) logs() string {
	var b strings.Builder
	for i, s := range c.Nodes {
		out, _ := os.ReadFile(filepath.Join(s.dir, "nats.log"))
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		fmt.Fprintf(&b, "--- node n%d\n%s\n", i, out)
	}
	return b.String()
}
