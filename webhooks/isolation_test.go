package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/webhooks"
)

// waitUntil polls cond until it holds; a minute is a bound for a broken
// build, not a measure of speed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute in vain for: %s", what)
		}
	}
}

// TestDispatcher_StuckEndpointDoesNotHoldUpOthers: with an endpoint that
// never answers and one that always fails beside a healthy one, under a
// global cap of 4 attempts in flight, the healthy endpoint gets every
// event while the stuck one holds no more than its own cap.
func TestDispatcher_StuckEndpointDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	stuck, failing, healthy := newReceiver(t), newReceiver(t), newReceiver(t)
	stuck.hold = make(chan struct{})
	t.Cleanup(func() { close(stuck.hold) })
	failing.setStatus(500)
	f.endpoint(t, stuck.URL)
	f.endpoint(t, failing.URL)
	f.endpoint(t, healthy.URL)
	d := f.dispatcher(t, func(c *webhooks.Config) {
		c.Now = nil // the real clock
		c.MaxInFlight, c.PerEndpoint, c.Poll = 4, 2, 20*time.Millisecond
		c.Timeout = time.Minute // the stuck endpoint holds its slots throughout
	})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const events = 30
	ids := map[string]bool{}
	for range events {
		ids[f.publish(t, "transfer.posted")] = true
		d.Wake()
	}
	waitUntil(t, "the healthy endpoint gets every event", func() bool {
		got := map[string]bool{}
		for _, r := range healthy.requests() {
			got[r.id] = true
		}
		return len(got) == events
	})
	for _, r := range healthy.requests() {
		if !ids[r.id] {
			t.Fatalf("an unknown webhook-id %s", r.id)
		}
	}
	if n := len(stuck.requests()); n > 2 {
		t.Fatalf("the stuck endpoint has %d requests in flight, over its cap of 2", n)
	}
}

// TestDispatcher_StoppedMidAttemptRedelivers: a dispatcher stopped while
// its attempt waits for the endpoint records nothing; once its lease runs
// out another dispatcher delivers the message, with the same webhook-id.
func TestDispatcher_StoppedMidAttemptRedelivers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	rcv.hold = make(chan struct{})
	ep := f.endpoint(t, rcv.URL)
	id := f.publish(t, "transfer.posted")
	a := f.dispatcher(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.RunOnce(ctx) }()
	waitUntil(t, "the first attempt reaches the endpoint", func() bool { return len(rcv.requests()) == 1 })
	stop()
	<-done
	rcv.mu.Lock()
	close(rcv.hold)
	rcv.hold = nil
	rcv.mu.Unlock()

	b := f.dispatcher(t)
	if n := f.runOnce(t, b); n != 0 {
		t.Fatal("a leased delivery was taken before its lease ran out")
	}
	f.clock.Add(a.Lease())
	if n := f.runOnce(t, b); n != 1 {
		t.Fatalf("%d attempts after the lease ran out, want 1", n)
	}
	got := rcv.requests()
	if len(got) != 2 || got[0].id != id || got[1].id != id {
		t.Fatalf("requests %+v, want two with webhook-id %s", got, id)
	}
	as := f.attempts(t, ep.ID)
	if len(as) != 1 || as[0].Attempt != 2 || as[0].Result != holdfast.WebhookSucceeded {
		t.Fatalf("attempts %+v, want the second, succeeded (the first was never recorded)", as)
	}
}

func TestDeliver_RedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	target := newReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ep := f.endpoint(t, redirect.URL)
	f.publish(t, "transfer.posted")
	f.runOnce(t, f.dispatcher(t))
	if len(target.requests()) != 0 {
		t.Fatal("the redirect was followed")
	}
	if as := f.attempts(t, ep.ID); as[0].Result != holdfast.WebhookFailed || as[0].StatusCode != 307 {
		t.Fatalf("attempt %+v, want failed with 307", as[0])
	}
	if n := dbtest.MustCount(t, f.db, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"); n != 1 {
		t.Fatal("the delivery is not scheduled again")
	}
}

// TestDispatcher_RatePerEndpoint: an endpoint that used its burst is not
// leased again until its bucket refills, though more of its messages are due.
func TestDispatcher_RatePerEndpoint(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	f.endpoint(t, rcv.URL)
	for range 6 {
		f.publish(t, "transfer.posted")
	}
	d := f.dispatcher(t, func(c *webhooks.Config) { c.Rate, c.PerEndpoint = 1, 4 })
	if n := f.runOnce(t, d); n != 4 {
		t.Fatalf("%d attempts, want the burst of 4", n)
	}
	if n := f.runOnce(t, d); n != 0 {
		t.Fatalf("%d attempts with the endpoint's bucket empty", n)
	}
	f.clock.Add(time.Second)
	if n := f.runOnce(t, d); n < 1 {
		t.Fatal("no attempt once a token is back")
	}
}

// TestDispatcher_CapHoldsAcrossReplicas: two dispatchers (two replicas)
// leasing at once never have more of one endpoint's attempts in flight
// than its cap.
func TestDispatcher_CapHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	f := setup(t)
	stuck := newReceiver(t)
	stuck.hold = make(chan struct{})
	t.Cleanup(func() { close(stuck.hold) })
	f.endpoint(t, stuck.URL)
	for range 20 {
		f.publish(t, "transfer.posted")
	}
	for range 2 {
		d := f.dispatcher(t, func(c *webhooks.Config) {
			c.Now, c.PerEndpoint, c.Poll, c.Timeout = nil, 2, 5*time.Millisecond, time.Minute
		})
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the endpoint's cap is in flight", func() bool { return len(stuck.requests()) >= 2 })
	time.Sleep(time.Second) // both replicas keep leasing meanwhile
	if n := len(stuck.requests()); n != 2 {
		t.Fatalf("%d attempts in flight across two replicas, over the cap of 2", n)
	}
}
