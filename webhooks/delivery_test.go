package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a fake clock the dispatcher reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func noJitter() float64              { return 0.5 }
func mustOK(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// fixture is a tenant on a fresh database, the webhook services, and a
// fake clock that starts at the database's now.
type fixture struct {
	db     *postgres.DB
	store  *postgres.WebhookStore
	svc    *postgres.WebhookService
	cipher *webhooks.Cipher
	tenant string
	clock  *clock
	seq    int64
}

func setup(t *testing.T) *fixture {
	t.Helper()
	db := dbtest.MustOpenDB(t)
	tenant, _ := dbtest.MustTenant(t, db)
	cipher, err := webhooks.NewCipher([]byte(strings.Repeat("k", webhooks.KeySize)))
	mustOK(t, err)
	_, err = postgres.NewConsumerStore(db).EnsureGroup(context.Background(), postgres.WebhookGroup, events.DefaultStream, "")
	mustOK(t, err)
	return &fixture{db: db, store: postgres.NewWebhookStore(db), svc: postgres.NewWebhookService(db, cipher), cipher: cipher,
		tenant: tenant, clock: &clock{now: time.Now()}}
}

// endpoint creates an endpoint of the tenant at url and returns it (with its secret).
func (f *fixture) endpoint(t *testing.T, url string, types ...string) *holdfast.WebhookEndpoint {
	t.Helper()
	e, err := f.svc.CreateWebhookEndpoint(context.Background(), f.tenant, holdfast.WebhookEndpointCreate{URL: url, EventTypes: types}, nil)
	mustOK(t, err)
	return e
}

// publish fans an event of the tenant out as the consumer group does, and
// returns its id.
func (f *fixture) publish(t *testing.T, typ string) string {
	t.Helper()
	f.seq++
	ev := holdfast.Event{ID: uuid.NewString(), Type: typ, Version: 1, Source: "ledger", TenantID: f.tenant,
		OccurredAt: time.Now().UTC(), Data: json.RawMessage(`{"n":1}`)}
	mustOK(t, f.store.Fanout(context.Background(), []holdfast.EventDelivery{{Seq: uint64(f.seq), Event: ev}}))
	if now := time.Now(); f.clock.Now().Before(now) {
		f.clock.Set(now) // it is due
	}
	return ev.ID
}

// dispatcher returns a dispatcher on the fake clock, not started, that may
// reach loopback; configure adjusts it.
func (f *fixture) dispatcher(t *testing.T, configure ...func(*webhooks.Config)) *webhooks.Dispatcher {
	t.Helper()
	c := webhooks.Config{Cipher: f.cipher, AllowPrivate: true, Now: f.clock.Now, Rand: noJitter, Timeout: 5 * time.Second}
	for _, fn := range configure {
		fn(&c)
	}
	d, err := webhooks.NewDispatcher(f.store, c)
	mustOK(t, err)
	t.Cleanup(d.Stop)
	return d
}

func (f *fixture) runOnce(t *testing.T, d *webhooks.Dispatcher) int {
	t.Helper()
	n, err := d.RunOnce(context.Background())
	mustOK(t, err)
	return n
}

func (f *fixture) attempts(t *testing.T, endpoint string) []*holdfast.WebhookAttempt {
	t.Helper()
	as, _, err := f.svc.ListWebhookAttempts(context.Background(), f.tenant, endpoint, holdfast.Page{Limit: 500})
	mustOK(t, err)
	return as
}

// request is what a receiver got.
type request struct {
	id, timestamp, signature string
	body                     []byte
}

// receiver is a real HTTP endpoint on loopback that records what it gets
// and answers with status (200 unless set).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []request
	status int
	hold   chan struct{} // when set, requests wait on it
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: 200}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, request{req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body})
		status, hold := r.status, r.hold
		r.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-req.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

func (r *receiver) setStatus(s int) { r.mu.Lock(); r.status = s; r.mu.Unlock() }

func TestDeliver_StandardWebhooksSignedAndRecorded(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	ep := f.endpoint(t, rcv.URL+"/hook", "transfer.posted")
	id := f.publish(t, "transfer.posted")
	f.publish(t, "account.created") // not subscribed
	if n := f.runOnce(t, f.dispatcher(t)); n != 1 {
		t.Fatalf("%d deliveries, want 1 (the other type is not subscribed)", n)
	}
	got := rcv.requests()
	if len(got) != 1 || got[0].id != id {
		t.Fatalf("received %+v, want one request with webhook-id %s", got, id)
	}
	if !verify(ep.Secret, got[0].id, got[0].timestamp, got[0].body, got[0].signature) {
		t.Fatalf("the signature %q does not verify with the endpoint's secret", got[0].signature)
	}
	var env holdfast.Event
	mustOK(t, json.Unmarshal(got[0].body, &env))
	if env.ID != id || env.Type != "transfer.posted" || env.TenantID != f.tenant {
		t.Fatalf("the body is not the event's envelope: %s", got[0].body)
	}
	as := f.attempts(t, ep.ID)
	if len(as) != 1 || as[0].Result != holdfast.WebhookSucceeded || as[0].StatusCode != 200 || as[0].NextAttemptAt != nil || as[0].MessageID != id {
		t.Fatalf("attempts %+v", as[0])
	}
	if n := f.runOnce(t, f.dispatcher(t)); n != 0 {
		t.Fatalf("a delivered message is attempted again (%d)", n)
	}
}

// TestDeliver_RetryScheduleOnFakeClock: a failing endpoint is attempted at
// once, then after 5s, 5m, 30m, 2h, 5h, 10h and 10h, with the same
// webhook-id each time, and never before its time; after the eighth
// failure the message has failed, visibly.
func TestDeliver_RetryScheduleOnFakeClock(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	rcv.setStatus(500)
	ep := f.endpoint(t, rcv.URL)
	id := f.publish(t, "transfer.posted")
	d := f.dispatcher(t)
	for i, wait := range webhooks.DefaultSchedule {
		if wait > 0 {
			f.clock.Add(wait - time.Millisecond)
			if n := f.runOnce(t, d); n != 0 {
				t.Fatalf("attempt %d made before its time", i+1)
			}
			f.clock.Add(time.Millisecond)
		}
		if n := f.runOnce(t, d); n != 1 {
			t.Fatalf("attempt %d not made when due (%d)", i+1, n)
		}
	}
	f.clock.Add(48 * time.Hour)
	if n := f.runOnce(t, d); n != 0 {
		t.Fatal("an attempt after the last")
	}
	got := rcv.requests()
	if len(got) != len(webhooks.DefaultSchedule) {
		t.Fatalf("%d requests, want %d", len(got), len(webhooks.DefaultSchedule))
	}
	for _, r := range got {
		if r.id != id {
			t.Fatalf("webhook-id %s on a retry, want %s every time", r.id, id)
		}
	}
	as := f.attempts(t, ep.ID)
	if last := as[0]; last.Attempt != 8 || last.Result != holdfast.WebhookFailed || last.StatusCode != 500 || last.NextAttemptAt != nil {
		t.Fatalf("last attempt %+v, want the 8th, failed, with no next", last)
	}
	if next := as[1].NextAttemptAt; next == nil || next.Sub(as[1].StartedAt).Round(time.Second) != 10*time.Hour {
		t.Fatalf("the 7th attempt's next is %v after it, want 10h", next)
	}
	if n := dbtest.MustCount(t, f.db, "SELECT count(*) FROM webhook_deliveries WHERE state = 'failed' AND message_id = $1", id); n != 1 {
		t.Fatal("the exhausted message is not failed")
	}
}

func TestDeliver_BreakerOpensThenHalfOpensWithOneProbe(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	rcv.setStatus(503)
	ep := f.endpoint(t, rcv.URL)
	for range 6 {
		f.publish(t, "transfer.posted")
	}
	d := f.dispatcher(t, func(c *webhooks.Config) {
		c.Schedule = webhooks.Schedule{0, 0, 0, 0, 0}
		c.PerEndpoint = 2
		c.Breaker = webhooks.BreakerConfig{Threshold: 2, Cooldown: time.Minute}
	})
	if n := f.runOnce(t, d); n != 2 {
		t.Fatalf("%d leased, want the endpoint's cap of 2", n)
	}
	if got, _ := f.svc.WebhookEndpoint(context.Background(), f.tenant, ep.ID); got.State != holdfast.WebhookOpen {
		t.Fatalf("after %d failures the endpoint is %s, want open", 2, got.State)
	}
	if n := f.runOnce(t, d); n != 0 {
		t.Fatalf("%d attempts while the breaker is open", n)
	}
	f.clock.Add(time.Minute)
	if n := f.runOnce(t, d); n != 1 {
		t.Fatalf("%d attempts half-open, want one probe", n)
	}
	f.clock.Add(time.Minute) // the failed probe opened it for 2 minutes
	if n := f.runOnce(t, d); n != 0 {
		t.Fatalf("%d attempts after a failed probe", n)
	}
	f.clock.Add(time.Minute)
	rcv.setStatus(204)
	if n := f.runOnce(t, d); n != 1 {
		t.Fatalf("%d probes, want 1", n)
	}
	if n := f.runOnce(t, d); n != 2 {
		t.Fatalf("%d attempts after a successful probe, want the cap again", n)
	}
}

func TestDeliver_DisabledEndpointGetsNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	ep := f.endpoint(t, rcv.URL)
	f.publish(t, "transfer.posted") // pending when it is disabled
	off := false
	_, err := f.svc.UpdateWebhookEndpoint(context.Background(), f.tenant, ep.ID, holdfast.WebhookEndpointUpdate{Enabled: &off})
	mustOK(t, err)
	f.publish(t, "transfer.posted")
	if n := f.runOnce(t, f.dispatcher(t)); n != 0 || len(rcv.requests()) != 0 {
		t.Fatalf("a disabled endpoint got %d requests", len(rcv.requests()))
	}
	if n := dbtest.MustCount(t, f.db, "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", ep.ID); n != 1 {
		t.Fatalf("%d deliveries written for the endpoint, want only the one from before it was disabled", n)
	}
}

func TestDeliver_EndpointFailingTooLongIsDisabledWithAnEvent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	rcv.setStatus(500)
	ep := f.endpoint(t, rcv.URL)
	f.publish(t, "transfer.posted")
	d := f.dispatcher(t, func(c *webhooks.Config) {
		c.Schedule = webhooks.Schedule{0, time.Hour, time.Hour}
		c.Breaker = webhooks.BreakerConfig{DisableAfter: 2 * time.Hour}
	})
	for range 3 {
		f.runOnce(t, d)
		f.clock.Add(time.Hour)
	}
	got, err := f.svc.WebhookEndpoint(context.Background(), f.tenant, ep.ID)
	mustOK(t, err)
	if got.Enabled || got.State != holdfast.WebhookDisabled || got.DisabledReason == "" {
		t.Fatalf("after failing for DisableAfter: %+v", got)
	}
	if n := dbtest.MustCount(t, f.db, `SELECT count(*) FROM outbox WHERE tenant_id = $1 AND type = $2 AND position($3 in convert_from(data, 'UTF8')) > 0`,
		f.tenant, holdfast.EventWebhookEndpointDisabled, ep.ID); n != 1 {
		t.Fatalf("%d %s events in the outbox, want 1", n, holdfast.EventWebhookEndpointDisabled)
	}
}

func TestDeliver_ReplayAndRecoverKeepTheID(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	ep := f.endpoint(t, rcv.URL)
	id := f.publish(t, "transfer.posted")
	d := f.dispatcher(t, func(c *webhooks.Config) { c.Schedule = webhooks.Schedule{0} })
	f.runOnce(t, d)
	_, err := f.svc.ReplayWebhookMessage(context.Background(), f.tenant, ep.ID, id)
	mustOK(t, err)
	f.clock.Set(time.Now()) // the replay is due at the database's now
	f.runOnce(t, d)
	// A message that failed its one attempt, recovered after the fix.
	rcv.setStatus(500)
	failed := f.publish(t, "transfer.posted")
	f.runOnce(t, d)
	rcv.setStatus(200)
	rec, err := f.svc.RecoverWebhookMessages(context.Background(), f.tenant, ep.ID, time.Now().Add(-time.Hour))
	mustOK(t, err)
	if rec.Recovered != 1 {
		t.Fatalf("recovered %d, want 1", rec.Recovered)
	}
	f.clock.Set(time.Now())
	f.runOnce(t, d)
	var ids []string
	for _, r := range rcv.requests() {
		ids = append(ids, r.id)
	}
	if want := []string{id, id, failed, failed}; strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("webhook-ids %v, want %v", ids, want)
	}
	if _, err := f.svc.ReplayWebhookMessage(context.Background(), f.tenant, ep.ID, "no-such-message"); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("replay of an unknown message: %v", err)
	}
}

func TestDeliver_RotationSignsWithBothSecretsDuringTheOverlap(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	ep := f.endpoint(t, rcv.URL)
	rotated, err := f.svc.RotateWebhookSecret(context.Background(), f.tenant, ep.ID, nil)
	mustOK(t, err)
	d := f.dispatcher(t)
	f.publish(t, "transfer.posted")
	f.runOnce(t, d)
	f.clock.Add(24*time.Hour + time.Minute) // past the overlap
	f.publish(t, "transfer.posted")
	f.runOnce(t, d)
	got := rcv.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	during, after := got[0], got[1]
	if len(strings.Fields(during.signature)) != 2 || !verify(ep.Secret, during.id, during.timestamp, during.body, during.signature) ||
		!verify(rotated.Secret, during.id, during.timestamp, during.body, during.signature) {
		t.Fatalf("during the overlap, %q does not carry both secrets' signatures", during.signature)
	}
	if len(strings.Fields(after.signature)) != 1 || verify(ep.Secret, after.id, after.timestamp, after.body, after.signature) ||
		!verify(rotated.Secret, after.id, after.timestamp, after.body, after.signature) {
		t.Fatalf("after the overlap, %q is not the new secret's alone", after.signature)
	}
}

func TestFanout_ExactlyOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rcv := newReceiver(t)
	f.endpoint(t, rcv.URL)
	f.endpoint(t, rcv.URL+"/other", "account.created")
	ev := holdfast.Event{ID: uuid.NewString(), Type: "transfer.posted", Version: 1, Source: "ledger", TenantID: f.tenant, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)}
	batch := []holdfast.EventDelivery{{Seq: 7, Event: ev}, {Seq: 7, Event: ev}}
	for range 2 {
		mustOK(t, f.store.Fanout(context.Background(), batch))
	}
	if n := dbtest.MustCount(t, f.db, "SELECT count(*) FROM webhook_deliveries WHERE message_id = $1", ev.ID); n != 1 {
		t.Fatalf("%d deliveries of an event applied twice, to one subscribed endpoint; want 1", n)
	}
}
