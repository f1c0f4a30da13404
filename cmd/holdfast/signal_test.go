package main_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// TestServe_SIGTERM runs the real binary, keeps transfers in flight, sends
// SIGTERM, and checks the shutdown is graceful: the process exits 0, no
// request got a 5xx, and every transfer a client saw succeed is stored.
func TestServe_SIGTERM(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "holdfast")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dbURL := pgtest.NewDatabase(t)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", t.TempDir(), "--admin-token", apptest.AdminToken, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	base := "http://" + addr
	anon := &apitest.Client{URL: base}
	for i := 0; ; i++ {
		if r, err := anon.Send(context.Background(), "GET", "/readyz", nil); err == nil && r.Status == 200 {
			break
		}
		if i == 300 {
			t.Fatal("the server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := (&apitest.Client{URL: base, Key: apptest.AdminToken}).MustTenant(t, "sigterm")
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)

	var mu sync.Mutex
	var created []string
	var signalled atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := c.Send(context.Background(), "POST", "/v1/transfers", apitest.Transfer(house, alice, 1, "USD"))
				if err != nil {
					if !signalled.Load() {
						t.Errorf("transfer before SIGTERM: %v", err)
					}
					return // after SIGTERM the listener and idle connections close: expected
				}
				if r.Status >= 500 {
					t.Errorf("status %d during shutdown: %s", r.Status, r.Body)
					return
				}
				if r.Status == http.StatusCreated {
					mu.Lock()
					created = append(created, r.JSON(t)["id"].(string))
					mu.Unlock()
				}
			}
		})
	}
	// Signal once transfers are flowing, however long this machine takes.
	waitUntil(t, "transfers flow", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(created) >= 20
	})
	signalled.Store(true)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not exit within 60 s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	if !strings.Contains(stdout.String(), "shutting down") {
		t.Errorf("stdout lacks the shutdown line: %q", stdout.String())
	}
	if len(created) == 0 {
		t.Fatal("no transfer succeeded before SIGTERM: the test exercised nothing")
	}
	pool := dbtest.MustPool(t, dbURL)
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM transfers WHERE id = ANY($1::uuid[])", created).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(created) {
		t.Fatalf("%d transfers acknowledged, %d stored", len(created), n)
	}
}
