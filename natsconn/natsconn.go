// Package natsconn connects Holdfast to NATS JetStream: an embedded server
// by default (file storage in the data directory, an in-process connection),
// or an external server or cluster by URL, which is how Holdfast scales past
// one machine.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// Config says which NATS to use.
type Config struct {
	// URL of an external NATS server, or of a cluster's servers
	// comma-separated (nats://a:4222,nats://b:4222,nats://c:4222): the
	// connection starts on any of them that answers, and moves to another
	// when its server is lost. Empty: run an embedded server.
	URL string
	// StoreDir holds the embedded server's JetStream files. Required when URL is empty.
	StoreDir string
	// Name identifies this client to the server. Default "holdfast".
	Name string
	// StartTimeout bounds the embedded server's start. Default 10s.
	StartTimeout time.Duration
	// Listen opens the embedded server's client port at this host:port
	// (port 0: a free one), so that tools such as the nats CLI can look at
	// the streams. It has no authentication: keep it on loopback. Default
	// empty: no port, Holdfast's own connection is in-process. Ignored
	// with URL.
	Listen string
}

// Conn is a connection to JetStream, owning the embedded server if any.
type Conn struct {
	NC     *nats.Conn
	JS     njs.JetStream
	server *server.Server
	url    string // the external servers Open was given
}

// Open starts the embedded server (when no URL is given) and connects.
func Open(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Name == "" {
		cfg.Name = "holdfast"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	c := &Conn{url: cfg.URL}
	opts := clientOptions(cfg.Name)
	url := cfg.URL
	if url == "" {
		if cfg.StoreDir == "" {
			return nil, errors.New("natsconn: StoreDir is required for the embedded server")
		}
		so := &server.Options{ServerName: cfg.Name, JetStream: true, StoreDir: cfg.StoreDir, DontListen: true, NoSigs: true}
		if cfg.Listen != "" {
			if err := listenOptions(so, cfg.Listen); err != nil {
				return nil, err
			}
		}
		ns, err := server.NewServer(so)
		if err != nil {
			return nil, fmt.Errorf("natsconn: embedded server: %w", err)
		}
		ns.Start()
		if !ns.ReadyForConnections(cfg.StartTimeout) {
			ns.Shutdown()
			return nil, errors.New("natsconn: embedded server did not start in time")
		}
		c.server = ns
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("natsconn: connect %s: %w", url, err)
	}
	c.NC = nc
	js, err := njs.New(nc)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("natsconn: %w", err)
	}
	c.JS = js
	if err := checkJetStream(ctx, js); err != nil {
		c.Close()
		return nil, fmt.Errorf("natsconn: the server at %s has no JetStream: %w", url, err)
	}
	return c, nil
}

// clientOptions are the options of every connection: it reconnects for
// ever, to any server of the cluster, soon after its server is lost (the
// events it could not publish meanwhile wait in the outbox).
func clientOptions(name string) []nats.Option {
	return []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second)}
}

// checkJetStream fails only when the server says it has no JetStream. A
// cluster without a meta leader (an election, a node down) does not answer
// in time: that is not a reason to refuse to start, and the streams'
// set-up retries until it answers.
func checkJetStream(ctx context.Context, js njs.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.AccountInfo(ctx)
	if errors.Is(err, njs.ErrJetStreamNotEnabled) || errors.Is(err, njs.ErrJetStreamNotEnabledForAccount) {
		return err
	}
	return nil
}

// listenOptions sets the embedded server's client port to addr. It checks
// that addr is free first: the server reports a port in use only by never
// becoming ready.
func listenOptions(opts *server.Options, addr string) error {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("natsconn: client port %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("natsconn: client port %q: not a port number", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("natsconn: client port: %w", err)
	}
	ln.Close()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.DontListen, opts.Host, opts.Port = false, host, port
	return nil
}

// ClientURL returns the URL of the embedded server's client port, such as
// nats://127.0.0.1:4223, or "" when it has none (no Config.Listen, or an
// external server).
func (c *Conn) ClientURL() string {
	if c.server == nil {
		return ""
	}
	addr, ok := c.server.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	host := c.server.ClientURL() // the configured host, which Addr reports as [::] when empty
	if u, err := url.Parse(host); err == nil && u.Hostname() != "" && u.Hostname() != "0.0.0.0" && u.Hostname() != "::" {
		return "nats://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(addr.Port))
	}
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
}

// Ping checks the connection with a round trip to the server, waiting at
// most 5s when ctx has no deadline.
func (c *Conn) Ping(ctx context.Context) error {
	if c.NC == nil || !c.NC.IsConnected() {
		return errors.New("natsconn: not connected")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return c.NC.FlushWithContext(ctx)
}

// Connect opens another connection to the same server (a second replica's
// connection, in tests and benchmarks); the caller closes it. The new Conn
// does not own the embedded server.
func (c *Conn) Connect(ctx context.Context, name string) (*Conn, error) {
	opts := clientOptions(name)
	url := c.url
	if url == "" {
		url = c.NC.ConnectedUrl()
	}
	if c.server != nil {
		url = c.server.ClientURL()
		opts = append(opts, nats.InProcessServer(c.server))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsconn: connect %s: %w", url, err)
	}
	js, err := njs.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsconn: %w", err)
	}
	return &Conn{NC: nc, JS: js, url: c.url}, nil
}

// Clustered reports whether the server this connection is on is part of a
// cluster (its INFO names one); false for the embedded server.
func (c *Conn) Clustered() bool { return c.NC != nil && c.NC.ConnectedClusterName() != "" }

// Servers returns how many servers the connection knows of: those its URL
// names and those the cluster told it of, a lower bound of the cluster's
// size when a node is down.
func (c *Conn) Servers() int {
	if c.NC == nil {
		return 0
	}
	return len(c.NC.Servers())
}

// Embedded reports whether Holdfast runs its own NATS server.
func (c *Conn) Embedded() bool { return c.server != nil }

// Close drains the connection and shuts the embedded server down. Idempotent.
func (c *Conn) Close() {
	if c.NC != nil {
		c.NC.Drain()
		for i := 0; i < 50 && !c.NC.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		c.NC.Close()
		c.NC = nil
	}
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
		c.server = nil
	}
}
