package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/media"
)

// server is a holdfast serve process.
type server struct {
	cmd  *exec.Cmd
	base string
}

// startServe starts the binary on a free port over dbURL and dataDir and
// waits until it is ready.
func startServe(t *testing.T, bin, dbURL, dataDir string, args ...string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--admin-token", apptest.AdminToken,
		"--log-level", "error", "--rate-limit", "0"}, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &server{cmd: cmd, base: "http://" + addr}
	anon := &apitest.Client{URL: s.base}
	for i := 0; ; i++ {
		if r, err := anon.Send(context.Background(), "GET", "/readyz", nil); err == nil && r.Status == 200 {
			return s
		}
		if i == 600 {
			t.Fatal("the server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// waitUntil polls cond until it holds, and fails t if it has not after a
// minute: long enough for any machine, a bound only so that a broken build
// fails instead of hanging.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for this, in vain: %s", what)
		}
	}
}

// mustBinary builds the holdfast binary once for the package's tests.
func mustBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "holdfast-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "holdfast")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestServe_Kill9MidStream kills the server with SIGKILL while transfers
// and client events flow, restarts it on the same database and data
// directory, and checks the event log lost and duplicated nothing: the
// audit trail holds exactly one record per ledger change and per
// acknowledged client event, and its chain verifies.
func TestServe_Kill9MidStream(t *testing.T) {
	t.Parallel()
	bin := mustBinary(t)
	dbURL, dataDir := pgtest.NewDatabase(t), t.TempDir()
	s := startServe(t, bin, dbURL, dataDir)
	c := (&apitest.Client{URL: s.base, Key: apptest.AdminToken}).MustTenant(t, "kill9")
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", true)

	var mu sync.Mutex
	var acked []string // client event ids the server acknowledged
	transfers := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if w == 0 {
					r, err := c.Send(context.Background(), "POST", "/v1/events", map[string]any{"events": []any{
						map[string]any{"type": "page.view"}, map[string]any{"type": "payment.attempted", "properties": map[string]any{"amount": 3, "currency": "USD"}}}})
					if err != nil {
						return // killed
					}
					if r.Status == 202 {
						mu.Lock()
						for _, id := range r.JSON(t)["ids"].([]any) {
							acked = append(acked, id.(string))
						}
						mu.Unlock()
					}
					continue
				}
				r, err := c.Send(context.Background(), "POST", "/v1/transfers", apitest.Transfer(house, alice, 1, "USD"))
				if err != nil {
					return
				}
				if r.Status == 201 {
					mu.Lock()
					transfers++
					mu.Unlock()
				}
			}
		})
	}
	// Kill once transfers and events are flowing (the relay and consumers
	// busy with them), however long this machine takes to get there.
	waitUntil(t, "transfers and client events flow", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return transfers >= 20 && len(acked) >= 4
	})
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
	close(stop)
	wg.Wait()
	if transfers == 0 || len(acked) == 0 {
		t.Fatalf("nothing flowed before the kill: %d transfers, %d events", transfers, len(acked))
	}

	t.Logf("killed with %d transfers and %d client events acknowledged", transfers, len(acked))
	s = startServe(t, bin, dbURL, dataDir)
	pool := dbtest.MustPool(t, dbURL)
	ctx := context.Background()
	var ledger int64 // every change the database committed, acknowledged or not
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM accounts WHERE tenant_id = $1) + (SELECT count(*) FROM transfers WHERE tenant_id = $1)`,
		c.Tenant).Scan(&ledger); err != nil {
		t.Fatal(err)
	}
	count := func(q string, args ...any) int64 {
		var n int64
		if err := pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Both kinds may still be on their way: the killed server's unacknowledged
	// deliveries come back only after the consumers' AckWait (30 s), while
	// later messages are applied meanwhile.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got := count(`SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND type IN ('account.created', 'transfer.posted')`, c.Tenant)
		client := count(`SELECT count(DISTINCT event_id) FROM audit_records WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])`, c.Tenant, acked)
		if got == ledger && client == int64(len(acked)) {
			break
		}
		if got > ledger || time.Now().After(deadline) {
			t.Fatalf("audit holds %d ledger records, want exactly %d (one per committed change), and %d of the %d acknowledged client events",
				got, ledger, client, len(acked))
		}
	}
	if dup := count(`SELECT count(*) - count(DISTINCT event_id) FROM audit_records WHERE tenant_id = $1`, c.Tenant); dup != 0 {
		t.Fatalf("%d events recorded twice", dup)
	}
	c.URL = s.base
	// Verified a page at a time, from the start.
	verified := int64(0)
	for path := "/v1/audit/verify?from=start"; ; {
		v := c.Do(t, "GET", path, nil).MustStatus(t, 200).JSON(t)
		if v["ok"] != true {
			t.Fatalf("verify after the restart: %v", v)
		}
		verified += int64(v["records"].(float64))
		if v["more"] != true {
			break
		}
		path = "/v1/audit/verify?cursor=" + v["next_cursor"].(string)
	}
	if verified < ledger+int64(len(acked)) {
		t.Fatalf("verified %d records after the restart, want at least %d", verified, ledger+int64(len(acked)))
	}
}

// TestServe_Kill9Worker kills a server with SIGKILL while its worker
// processes a receipt; another server on the same database, NATS and data
// directory gets the job again after the visibility timeout and finishes
// it, once.
func TestServe_Kill9Worker(t *testing.T) {
	t.Parallel()
	natsURL := natstest.ExternalURL(t)
	if natsURL == natstest.DefaultURL {
		t.Skip("needs a nats-server of its own (the shared one on 4222 may hold other jobs)")
	}
	bin := mustBinary(t)
	dbURL, dataDir := pgtest.NewDatabase(t), t.TempDir()
	flags := []string{"--nats-url", natsURL, "--receipt-visibility-timeout", "2s", "--receipt-workers", "1"}
	a := startServe(t, bin, dbURL, dataDir, flags...)
	c := (&apitest.Client{URL: a.base, Key: apptest.AdminToken}).MustTenant(t, "kill9-worker")
	from, to := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", true)
	tr := c.Do(t, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "USD")).MustStatus(t, 201).JSON(t)["id"].(string)
	// Big enough that processing takes a while (about 24 megapixels).
	img := media.Generate(6000, 4000, 1)
	id := c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", img).MustStatus(t, 202).JSON(t)["id"].(string)

	pool := dbtest.MustPool(t, dbURL)
	status := func() (string, int) {
		var s string
		var n int
		if err := pool.QueryRow(context.Background(), "SELECT status, attempts FROM receipts WHERE id = $1", id).Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		return s, n
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s, _ := status()
		if s == "processing" {
			break
		}
		if s != "queued" || time.Now().After(deadline) {
			t.Fatalf("the worker never picked the job up before finishing it: status %s", s)
		}
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	if s, _ := status(); s != "processing" {
		t.Fatalf("the job finished before the kill (status %s): the test exercised nothing", s)
	}

	b := startServe(t, bin, dbURL, dataDir, flags...)
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if s, _ := status(); s == "ready" {
			break
		}
		if time.Now().After(deadline) {
			s, n := status()
			t.Fatalf("the job was not finished after the kill: status %s, %d attempts", s, n)
		}
	}
	if _, n := status(); n != 2 {
		t.Fatalf("%d attempts, want 2 (the killed worker's and the survivor's)", n)
	}
	processed := func() int {
		var n int
		pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM outbox WHERE type = 'receipt.processed')
			+ (SELECT count(*) FROM audit_records WHERE type = 'receipt.processed')`).Scan(&n)
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); processed() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no receipt.processed event")
		}
	}
	time.Sleep(3 * time.Second) // past another visibility timeout: nothing comes back
	if n := processed(); n != 1 {
		t.Fatalf("%d receipt.processed events, want 1", n)
	}
	c.URL = b.base
	m := c.Do(t, "GET", "/v1/receipts/"+id, nil).MustStatus(t, 200).JSON(t)
	if m["status"] != "ready" || m["variants"].(map[string]any)["medium"] == nil {
		t.Fatalf("receipt after the restart: %v", m)
	}
}
