package main_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/media"
)

// TestServe_Kill9MidUploads kills the server with SIGKILL while uploads
// flow through batched intake, restarts it on the same database and data
// directory, and checks that every upload answered 202 kept its receipt
// and its original, byte for byte, and is processed to ready.
func TestServe_Kill9MidUploads(t *testing.T) {
	t.Parallel()
	bin := mustBinary(t)
	dbURL, dataDir := pgtest.NewDatabase(t), t.TempDir()
	s := startServe(t, bin, dbURL, dataDir)
	c := (&apitest.Client{URL: s.base, Key: apptest.AdminToken}).MustTenant(t, "kill9-intake")
	from, to := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", true)
	base := media.Generate(64, 48, 1)

	type accepted struct{ receipt, transfer string }
	var mu sync.Mutex
	var acked []accepted
	images := map[string][]byte{} // transfer → the image uploaded to it
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := c.Send(context.Background(), "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "USD"))
				if err != nil || r.Status != 201 {
					return // killed
				}
				tr := r.JSON(t)["id"].(string)
				img := append(bytes.Clone(base), fmt.Sprintf("kill9-%d-%d", w, i)...) // a distinct file each
				mu.Lock()
				images[tr] = img
				mu.Unlock()
				r, err = c.Send(context.Background(), "PUT", "/v1/transfers/"+tr+"/receipt", img)
				if err != nil {
					return
				}
				if r.Status == 202 {
					mu.Lock()
					acked = append(acked, accepted{r.JSON(t)["id"].(string), tr})
					mu.Unlock()
				}
			}
		})
	}
	waitUntil(t, "uploads flow", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 40
	})
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
	close(stop)
	wg.Wait()
	t.Logf("killed with %d uploads acknowledged", len(acked))

	s = startServe(t, bin, dbURL, dataDir)
	c.URL = s.base
	for _, a := range acked {
		got := c.Do(t, "GET", "/v1/receipts/"+a.receipt+"/original", nil).MustStatus(t, 200)
		if !bytes.Equal(got.Body, images[a.transfer]) {
			t.Fatalf("receipt %s: the original after the restart is not the upload (%d bytes, want %d)", a.receipt, len(got.Body), len(images[a.transfer]))
		}
	}
	pool := dbtest.MustPool(t, dbURL)
	ids := make([]string, len(acked))
	for i, a := range acked {
		ids[i] = a.receipt
	}
	waitUntil(t, "every acknowledged receipt is ready", func() bool {
		var ready int
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM receipts WHERE id = ANY($1::uuid[]) AND status = 'ready'", ids).Scan(&ready); err != nil {
			t.Fatal(err)
		}
		return ready == len(acked)
	})
}
