// Package natstest gives tests an external NATS server with JetStream, as
// `--nats-url` would use: the machine's nats-server binary started by the
// test on a free port (Debian packages nats-server 2.9, older than the
// embedded server, which is the point), else a server already listening on
// 127.0.0.1:4222. scripts/ensure-deps.sh installs the binary where it can.
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

// ExternalURL returns the URL of a NATS server with JetStream for tb, or
// skips tb, saying why, when neither a nats-server binary nor a running
// server is available. A server it starts stops when tb ends.
func ExternalURL(tb testing.TB) string {
	tb.Helper()
	if bin := binary(); bin != "" {
		return start(tb, bin)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
		c.Close()
		return DefaultURL
	}
	tb.Skip("no external NATS: no nats-server binary (apt-get install nats-server) and nothing listening on 127.0.0.1:4222")
	return ""
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

func start(tb testing.TB, bin string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := tb.TempDir()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir)
	cmd.Stdout, cmd.Stderr = nil, nil
	log, err := os.Create(filepath.Join(dir, "nats.log"))
	if err == nil {
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if log != nil {
			log.Close()
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "nats://" + addr
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "nats.log"))
			tb.Fatalf("%s did not listen on %s: %s", bin, addr, out)
		}
	}
}
