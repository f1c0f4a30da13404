package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/receipts"
)

// onCluster points a Main at the cluster, as --nats-url with every node.
func onCluster(cl *natstest.Cluster, replicas int) func(*app.Config) {
	return func(c *app.Config) { c.NATSURL, c.NATSReplicas = cl.URLs(), replicas }
}

// On a cluster, every stream and durable consumer has three copies by
// default; streams a replica made with one copy are scaled to three.
func TestMain_OnAClusterStreamsAndConsumersHaveThreeCopies(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	db := pgtest.NewDatabase(t)
	first := apptest.MustStart(t, db, onCluster(cl, 1))
	if info, err := cl.StreamInfo("events"); err != nil || info.Config.Replicas != 1 {
		t.Fatalf("with --nats-replicas 1: stream events %v, %v; want R1", info, err)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := apptest.MustStart(t, db, onCluster(cl, 0))
	anon := &apitest.Client{URL: second.HTTP.URL()}
	waitFor(t, "the NATS set-up to complete", func() bool { return setupDone(t, anon) == "1" })
	for _, s := range []string{"events", holdfast.JobsStream, receipts.DefaultDeadStream} {
		info, err := cl.StreamInfo(s)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s has %d copies, want 3", s, info.Config.Replicas)
		}
	}
	for _, c := range [][2]string{{"events", "analytics"}, {"events", "audit"}, {holdfast.JobsStream, receipts.DefaultConsumer}} {
		info, err := cl.ConsumerInfo(c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Errorf("consumer %s has %d copies, want 3", c[1], info.Config.Replicas)
		}
	}
}

// More copies than a lone server keeps is refused at start, saying why.
func TestMain_ReplicasOnALoneServerAreRefused(t *testing.T) {
	t.Parallel()
	err := RunMainErr(t, func(c *app.Config) { c.NATSReplicas = 3 })
	if err == nil || !strings.Contains(err.Error(), "--nats-replicas") {
		t.Fatalf("Run with the embedded server and --nats-replicas 3 = %v, want it refused", err)
	}
}

// A replica starts and is ready while the NATS node that holds the
// single copy of the events stream is down: the ledger serves, events wait
// in the outbox, client events are refused with 503 (the stream cannot
// store them); once the node is back, the set-up completes in the
// background (scaling the stream to three copies) and every event reaches
// the groups once.
func TestMain_StartsWhileANATSNodeIsDown(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	db := pgtest.NewDatabase(t)
	first := apptest.MustStart(t, db, onCluster(cl, 1))
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	node := cl.StreamLeader("events")
	cl.Kill(node)

	m := apptest.MustStart(t, db, onCluster(cl, 0))
	anon := &apitest.Client{URL: m.HTTP.URL()}
	anon.Do(t, "GET", "/readyz", nil).MustStatus(t, 200)
	if got := setupDone(t, anon); got != "0" {
		t.Fatalf("holdfast_nats_setup_done = %s with the events stream's node down, want 0", got)
	}
	c := apptest.Admin(m).MustTenant(t, "node-down")
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)
	for range 3 {
		c.Do(t, "POST", "/v1/transfers", apitest.Transfer(house, alice, 10, "USD")).MustStatus(t, 201)
	}
	events := map[string]any{"events": []map[string]any{{"type": "page.view"}, {"type": "page.view"}}}
	c.Do(t, "POST", "/v1/events", events, "Idempotency-Key", "down-1").MustStatus(t, 503)

	cl.Start(node)
	waitFor(t, "the NATS set-up to complete", func() bool { return setupDone(t, anon) == "1" })
	c.Do(t, "POST", "/v1/events", events, "Idempotency-Key", "down-1").MustStatus(t, 202)
	if err := m.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertAppliedOnce(t, db, c.Tenant, 2+3+2)
	if info, err := cl.StreamInfo("events"); err != nil || info.Config.Replicas != 3 {
		t.Fatalf("stream events after the set-up: %v, %v; want 3 copies", info, err)
	}
}

// setupDone returns holdfast_nats_setup_done from /metrics.
func setupDone(t *testing.T, anon *apitest.Client) string {
	t.Helper()
	for _, line := range strings.Split(string(anon.Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body), "\n") {
		if v, ok := strings.CutPrefix(line, "holdfast_nats_setup_done "); ok {
			return v
		}
	}
	return "absent"
}

// assertAppliedOnce checks that the audit trail and the analytics rollups
// each hold the tenant's want events, each event once.
func assertAppliedOnce(t *testing.T, dbURL, tenant string, want int64) {
	t.Helper()
	pool := dbtest.MustPool(t, dbURL)
	var audited, distinct, counted int64
	if err := pool.QueryRow(t.Context(), "SELECT count(*), count(DISTINCT event_id) FROM audit_records WHERE tenant_id = $1", tenant).Scan(&audited, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(t.Context(), "SELECT coalesce(sum(count), 0) FROM analytics_minutes WHERE tenant_id = $1", tenant).Scan(&counted); err != nil {
		t.Fatal(err)
	}
	if audited != want || distinct != want || counted != want {
		t.Fatalf("audit holds %d records (%d distinct events), analytics counts %d; want %d each", audited, distinct, counted, want)
	}
}

// clusterAttempts bounds a client's tries of one request while a node is
// lost: it retries a 503 with the same Idempotency-Key, as a client should.
const clusterAttempts = 40

// Killing (SIGKILL) the node that leads the events stream, or the one that
// leads the audit group's consumer, while transfers and client events are
// posted loses nothing and doubles nothing: every committed transfer's
// event and every acknowledged client event reaches the consumer groups
// once, and POST /v1/events recovers within a bounded number of retries.
func TestMain_RidesThroughTheLossOfANATSNode(t *testing.T) {
	t.Parallel()
	for name, leader := range map[string]func(*natstest.Cluster) int{
		"stream leader":   func(cl *natstest.Cluster) int { return cl.StreamLeader("events") },
		"consumer leader": func(cl *natstest.Cluster) int { return cl.ConsumerLeader("events", "audit") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ridesThroughTheLossOf(t, leader)
		})
	}
}

func ridesThroughTheLossOf(t *testing.T, leader func(*natstest.Cluster) int) {
	cl := natstest.StartCluster(t, 3)
	db := pgtest.NewDatabase(t)
	m := apptest.MustStart(t, db, onCluster(cl, 0))
	c := apptest.Admin(m).MustTenant(t, "node-loss")
	house, alice := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", false)

	var transfers, clientEvents, requests, worst atomic.Int64
	var failed atomic.Value
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-killed:
					if i > 0 && requests.Load() > 160 {
						return
					}
				default:
				}
				key := fmt.Sprintf("loss-%d-%d", w, i)
				path, body, n := "/v1/transfers", any(apitest.Transfer(house, alice, 1, "USD")), &transfers
				if w%2 == 1 {
					path, body, n = "/v1/events", map[string]any{"events": []map[string]any{{"type": "page.view"}, {"type": "page.view"}}}, &clientEvents
				}
				attempts, err := postUntilDone(c, path, body, key)
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				worst.Store(max(worst.Load(), int64(attempts)))
				if path == "/v1/transfers" {
					n.Add(1)
				} else {
					n.Add(2)
				}
				requests.Add(1)
			}
		})
	}
	waitFor(t, "traffic before the kill", func() bool { return requests.Load() >= 40 || failed.Load() != nil })
	cl.Kill(leader(cl))
	close(killed)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d transfers, %d client events; the most attempts one request took: %d", transfers.Load(), clientEvents.Load(), worst.Load())
	if got := c.Balance(t, alice); got != transfers.Load() {
		t.Fatalf("balance = %d, want %d (each committed transfer once)", got, transfers.Load())
	}
	if err := m.DrainEvents(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertAppliedOnce(t, db, c.Tenant, 2+transfers.Load()+clientEvents.Load())
}

// postUntilDone posts body to path with the Idempotency-Key, retrying a
// refusal (503, 429) with the same key up to clusterAttempts times; it
// returns the attempts it took.
func postUntilDone(c *apitest.Client, path string, body any, key string) (int, error) {
	for attempt := 1; attempt <= clusterAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := c.Send(ctx, "POST", path, body, "Idempotency-Key", key)
		cancel()
		switch {
		case err != nil:
			return attempt, fmt.Errorf("POST %s: %w", path, err)
		case r.Status == http.StatusCreated || r.Status == http.StatusAccepted:
			return attempt, nil
		case r.Status != http.StatusServiceUnavailable && r.Status != http.StatusTooManyRequests:
			return attempt, fmt.Errorf("POST %s: status %d: %s", path, r.Status, r.Body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return clusterAttempts, fmt.Errorf("POST %s (key %s): still refused after %d attempts", path, key, clusterAttempts)
}
