// Package natstest gives tests an external NATS server with JetStream, as
// `--nats-url` would use: the machine's nats-server binary started by the
// test on a free port (Debian packages nats-server 2.9, older than the
// embedded server, which is the point), else a server already listening on
// 127.0.0.1:4222, else one built from go.mod's module (Built).
// scripts/ensure-nats.sh installs the binary where it can. StartCluster
// gives a three-node JetStream cluster, always of the built binary.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DefaultURL is the server a machine may already run.
const DefaultURL = "nats://127.0.0.1:4222"

// ExternalURL returns the URL of a NATS server with JetStream for tb. A
// server it starts stops when tb ends.
func ExternalURL(tb testing.TB) string {
	tb.Helper()
	if binary() != "" {
		return StartServer(tb).URL
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
		c.Close()
		return DefaultURL
	}
	return StartServer(tb).URL
}

func binary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/local/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Server is a nats-server process of a test's own, which the test may stop
// and start again: on the same port, with the same JetStream files.
type Server struct {
	URL string

	tb       testing.TB
	bin, dir string
	addr     string
	args     []string // more of the server's options (a cluster node's)
	cmd      *exec.Cmd
	log      *os.File
}

// StartServer starts a nats-server with JetStream on a free port: the
// machine's, else one built from go.mod's module. It stops when tb ends.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bin := binary()
	if bin == "" {
		bin = Built(tb)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), addr: freeAddr(tb)}
	s.URL = "nats://" + s.addr
	tb.Cleanup(s.Stop)
	s.Start()
	return s
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprintf("127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)
}

// Start starts the server again after Stop, and waits until it listens.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	host, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command(s.bin, append([]string{"-a", host, "-p", port, "-js", "-sd", s.dir}, s.args...)...)
	log, err := os.OpenFile(filepath.Join(s.dir, "nats.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start %s: %v", s.bin, err)
	}
	s.cmd, s.log = cmd, log
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(s.dir, "nats.log"))
			s.tb.Fatalf("%s did not listen on %s: %s", s.bin, s.addr, out)
		}
	}
}

// Stop kills the server (SIGKILL: no clean shutdown) and waits for it to
// exit. Idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	if s.log != nil {
		s.log.Close()
	}
	s.cmd, s.log = nil, nil
}
