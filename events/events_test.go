package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/natstest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/internal/testkit/promtest"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

// env is a database, a JetStream and the event log on them.
type env struct {
	db        *postgres.DB
	nats      *natsconn.Conn
	stream    events.StreamConfig
	tenant    string
	accounts  *postgres.AccountService
	transfers *postgres.TransferService
	analytics *postgres.AnalyticsService
	audit     *postgres.AuditService
	states    *postgres.ConsumerStore
	metrics   *prometheus.Registry // the groups'
	// groupMetricsOnce is the groups' metrics on metrics, made by groupMetrics.
	groupMetricsOnce *events.GroupMetrics
}

// setup returns a fresh database with a tenant, and an embedded JetStream
// with the events stream.
func setup(t *testing.T, natsCfg ...natsconn.Config) *env {
	t.Helper()
	db := dbtest.MustOpenDB(t)
	cfg := natsconn.Config{StoreDir: t.TempDir()}
	if len(natsCfg) > 0 {
		cfg = natsCfg[0]
	}
	nc, err := natsconn.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := &env{db: db, nats: nc, accounts: postgres.NewAccountService(db), transfers: postgres.NewTransferService(db),
		analytics: postgres.NewAnalyticsService(db), audit: postgres.NewAuditService(db), states: postgres.NewConsumerStore(db),
		metrics: prometheus.NewRegistry()}
	// A stream of its own, so tests against a shared external server do not meet.
	e.stream = events.StreamConfig{Name: "events_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_"), MaxBytes: 64 << 20}
	if !nc.Embedded() {
		nc.JS.DeleteStream(t.Context(), e.stream.Name)
		t.Cleanup(func() { nc.JS.DeleteStream(context.Background(), e.stream.Name) })
	}
	if _, err := events.EnsureStream(t.Context(), nc.JS, e.stream); err != nil {
		t.Fatal(err)
	}
	tn, _, err := postgres.NewTenantService(db).CreateTenant(t.Context(), holdfast.TenantCreate{Name: t.Name()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.tenant = tn.ID
	return e
}

func (e *env) mustAccount(t *testing.T, overdraft bool) string {
	t.Helper()
	a, err := e.accounts.CreateAccount(t.Context(), e.tenant, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: overdraft}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func (e *env) mustTransfer(t *testing.T, from, to string, amount int64) {
	t.Helper()
	_, _, err := e.transfers.CreateTransfers(t.Context(), holdfast.TransferRequest{TenantID: e.tenant, Transfers: []holdfast.TransferCreate{
		{DebitAccountID: from, CreditAccountID: to, Amount: amount, Currency: "USD"}}})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) relay(t *testing.T) *events.Relay {
	t.Helper()
	r, err := events.NewRelay(e.db, e.nats.JS, events.RelayConfig{Stream: e.stream, Logger: quiet, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) group(t *testing.T, name string, applier events.Applier, configure ...func(*events.GroupConfig)) *events.Group {
	t.Helper()
	cfg := events.GroupConfig{Name: name, Stream: e.stream, Logger: quiet, FetchWait: 100 * time.Millisecond,
		StatePoll: 50 * time.Millisecond, Cooldown: 200 * time.Millisecond}
	for _, f := range configure {
		f(&cfg)
	}
	g, err := events.NewGroup(e.nats.JS, applier, e.states, e.groupMetrics(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// groupMetrics returns the env's group metrics, registered on e.metrics
// at the first call.
func (e *env) groupMetrics(t *testing.T) *events.GroupMetrics {
	t.Helper()
	if e.groupMetricsOnce == nil {
		m, err := events.NewGroupMetrics(e.metrics)
		if err != nil {
			t.Fatal(err)
		}
		e.groupMetricsOnce = m
	}
	return e.groupMetricsOnce
}

// waitPauseSeen waits until the group's worker has seen its pause: it sets
// holdfast_consumer_paused between fetches only, so then none of its
// fetches is in flight (with the one worker of a group here).
func (e *env) waitPauseSeen(t *testing.T, group string) {
	t.Helper()
	eventually(t, group+"'s worker sees the pause", func() bool {
		return promtest.GaugeValue(t, e.metrics, "holdfast_consumer_paused", "group", group) == 1
	})
}

func (e *env) start(t *testing.T, workers ...interface {
	Start(context.Context) error
	Stop()
}) {
	t.Helper()
	for _, w := range workers {
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
}

// streamMsgs returns how many messages the stream holds.
func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := e.nats.JS.Stream(t.Context(), e.stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) outboxLen(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) auditCount(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM audit_records WHERE tenant_id = $1", e.tenant).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond until it holds, failing t after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// Every ledger change is in the outbox, in the change's own transaction:
// a committed account or transfer has its event; a rolled-back one has none.
func TestOutbox_AtomicWithTheChange(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.mustAccount(t, true), e.mustAccount(t, false)
	e.mustTransfer(t, a, b, 100)
	// A refused transfer (insufficient funds) is recorded as rejected.
	_, _, err := e.transfers.CreateTransfers(t.Context(), holdfast.TransferRequest{TenantID: e.tenant, Transfers: []holdfast.TransferCreate{
		{DebitAccountID: b, CreditAccountID: a, Amount: 1000, Currency: "USD"}}})
	if !holdfast.IsCode(err, holdfast.EINSUFFICIENT) {
		t.Fatalf("err = %v, want insufficient funds", err)
	}

	// A transfer whose transaction rolls back: its batch waits on a row
	// lock the test holds, and its deadline passes.
	tx, err := e.db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	_, _, err = e.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: e.tenant, Transfers: []holdfast.TransferCreate{
		{DebitAccountID: a, CreditAccountID: b, Amount: 7, Currency: "USD"}}})
	cancel()
	tx.Rollback(t.Context())
	if err == nil {
		t.Fatal("the transfer committed although its account was locked past its deadline")
	}

	rows, _ := e.db.Pool.Query(t.Context(), "SELECT type FROM outbox WHERE tenant_id = $1 ORDER BY seq", e.tenant)
	var types []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		types = append(types, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := []string{"account.created", "account.created", "transfer.posted", "transfer.rejected"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("outbox = %v, want %v", types, want)
	}
}

// crashingOutbox publishes like the real relay, then fails before the rows
// are deleted: a relay that died between publish and delete.
type crashingOutbox struct {
	db      *postgres.DB
	crashes atomic.Int32
}

var errCrash = errors.New("relay crashed after publishing")

func (c *crashingOutbox) RelayOutbox(ctx context.Context, topic string, after int64, limit int, publish func(context.Context, []holdfast.OutboxMessage) error) (int, int64, bool, error) {
	return c.db.RelayOutbox(ctx, topic, after, limit, func(ctx context.Context, msgs []holdfast.OutboxMessage) error {
		if err := publish(ctx, msgs); err != nil {
			return err
		}
		if c.crashes.Add(-1) >= 0 {
			for i := range msgs { // a process that died records nothing
				msgs[i].Stored = false
			}
			return errCrash
		}
		return nil
	})
}

// relayCrashingOnce runs one relay round of up to batch events that
// publishes and then crashes before deleting the rows, and returns that
// relay (its next rounds do not crash).
func (e *env) relayCrashingOnce(t *testing.T, batch int) *events.Relay {
	t.Helper()
	crashing := &crashingOutbox{db: e.db}
	crashing.crashes.Store(1)
	r, err := events.NewRelay(crashing, e.nats.JS, events.RelayConfig{Stream: e.stream, Logger: quiet, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RelayOnce(t.Context()); !errors.Is(err, errCrash) {
		t.Fatalf("first round: %v, want the crash", err)
	}
	return r
}

func (c *crashingOutbox) ListenOutbox(ctx context.Context, wake func()) error {
	return c.db.ListenOutbox(ctx, wake)
}

// A relay that crashes after publishing and before deleting republishes on
// restart; the stream stores each event once, and the outbox empties.
func TestRelay_CrashBetweenPublishAndDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	for i := 0; i < 20; i++ {
		e.mustTransfer(t, a, b, int64(i+1))
	}
	const want = 22 // two accounts, twenty transfers

	r := e.relayCrashingOnce(t, 500)
	if got := e.streamMsgs(t); got != want {
		t.Fatalf("after the crash the stream holds %d, want %d", got, want)
	}
	if got := e.outboxLen(t); got != want {
		t.Fatalf("after the crash the outbox holds %d, want all %d still", got, want)
	}
	// The restarted relay publishes the same events again.
	if n, err := r.RelayOnce(t.Context()); err != nil || n != want {
		t.Fatalf("second round: %d, %v", n, err)
	}
	if got := e.streamMsgs(t); got != want {
		t.Fatalf("the stream holds %d after the republish, want %d (duplicates stored)", got, want)
	}
	if got := e.outboxLen(t); got != 0 {
		t.Fatalf("outbox holds %d, want 0", got)
	}
}

// A woken relay scans from just behind what it relayed recently, but
// sequences are taken at insert and committed in any order: a row committed
// after rows above it were relayed is still relayed, by the periodic sweep.
func TestRelay_LateCommitBelowTheCursor(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	late, err := e.db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(context.Background())
	if _, err := late.Exec(t.Context(), `INSERT INTO outbox (id, tenant_id, type, occurred_at, data)
		VALUES (gen_random_uuid(), $1, 'test.late', now(), '{}')`, e.tenant); err != nil {
		t.Fatal(err)
	}
	// Settle of a nanosecond: the cursor follows every round at once.
	r, err := events.NewRelay(e.db, e.nats.JS, events.RelayConfig{Stream: e.stream, Logger: quiet,
		Poll: 300 * time.Millisecond, Settle: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, r)
	const transfers = 5
	for i := 0; i < transfers; i++ { // each woken round moves the cursor past the late row
		e.mustTransfer(t, a, b, 1)
		eventually(t, "the transfer relayed", func() bool { return e.outboxLen(t) == 0 })
	}
	if err := late.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the late row relayed", func() bool { return e.outboxLen(t) == 0 })
	if got, want := e.streamMsgs(t), uint64(2+transfers+1); got != want {
		t.Fatalf("the stream holds %d events, want %d", got, want)
	}
}

// The whole path: ledger changes → outbox → relay → stream → analytics and
// audit, with the relay woken by notifications; then every effect is there
// exactly once, and the chain verifies.
func TestLog_EndToEnd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.start(t, e.relay(t), e.group(t, postgres.AnalyticsGroup, e.analytics), e.group(t, postgres.AuditGroup, e.audit))
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	var sum int64
	for i := 0; i < 50; i++ {
		e.mustTransfer(t, a, b, int64(i+1))
		sum += int64(i + 1)
	}
	const want = 52
	eventually(t, "audit holds every event", func() bool { return e.auditCount(t) == want })

	v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{})
	if err != nil || !v.OK || v.Records != want {
		t.Fatalf("verify = %+v, %v", v, err)
	}
	eventually(t, "analytics counts every transfer", func() bool {
		rs, err := e.analytics.ListRollups(t.Context(), e.tenant, holdfast.RollupFilter{
			From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Type: holdfast.EventTransferPosted})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		var total int64
		for _, r := range rs {
			n += r.Count
			var s int64
			fmt.Sscan(r.AmountSum, &s)
			total += s
			if r.Currency != "USD" {
				t.Fatalf("rollup currency %q", r.Currency)
			}
		}
		return n == 50 && total == sum
	})
	if got := e.outboxLen(t); got != 0 {
		t.Fatalf("outbox holds %d after the relay ran", got)
	}
}

// Applying a batch again (a redelivery) changes nothing.
func TestConsumers_RedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, name := range []string{postgres.AnalyticsGroup, postgres.AuditGroup} {
		if _, err := e.states.EnsureGroup(t.Context(), name, e.stream.Name, ""); err != nil {
			t.Fatal(err)
		}
	}
	batch := make([]holdfast.EventDelivery, 10)
	for i := range batch {
		ev := holdfast.Event{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "checkout.click", Version: 1,
			Source: holdfast.SourceClient, TenantID: e.tenant, OccurredAt: time.Now().UTC(), Data: []byte(`{"amount":5,"currency":"EUR"}`)}
		batch[i] = holdfast.EventDelivery{Seq: uint64(i + 1), Event: ev, Raw: fmt.Appendf(nil, `{"id":%q}`, ev.ID)}
	}
	for round := 0; round < 3; round++ {
		if err := e.audit.ApplyEvents(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if err := e.analytics.ApplyEvents(t.Context(), batch[round:]); err != nil { // overlapping redeliveries
			t.Fatal(err)
		}
	}
	if got := e.auditCount(t); got != 10 {
		t.Fatalf("audit holds %d records, want 10", got)
	}
	rs, err := e.analytics.ListRollups(t.Context(), e.tenant, holdfast.RollupFilter{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Count != 10 || rs[0].AmountSum != "50" || rs[0].Currency != "EUR" {
		t.Fatalf("rollups = %+v, want one of 10 events summing 50 EUR", rs)
	}
	// After pruning to the floor, the old sequences stay applied.
	if err := e.states.Prune(t.Context(), postgres.AuditGroup, 10); err != nil {
		t.Fatal(err)
	}
	if err := e.audit.ApplyEvents(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if got := e.auditCount(t); got != 10 {
		t.Fatalf("after prune, audit holds %d records, want 10", got)
	}
	// A message delivered twice in one fetch: its delivery twice in one batch
	// applies once (the group passes both on).
	ev := batch[0].Event
	ev.ID = "00000000-0000-4000-8000-000000000010"
	again := holdfast.EventDelivery{Seq: 11, Event: ev, Raw: fmt.Appendf(nil, `{"id":%q}`, ev.ID)}
	twice := []holdfast.EventDelivery{again, again}
	if err := e.audit.ApplyEvents(t.Context(), twice); err != nil {
		t.Fatal(err)
	}
	if err := e.analytics.ApplyEvents(t.Context(), twice); err != nil {
		t.Fatal(err)
	}
	if got := e.auditCount(t); got != 11 {
		t.Fatalf("after a delivery twice in one batch, audit holds %d records, want 11", got)
	}
	rs, err = e.analytics.ListRollups(t.Context(), e.tenant, holdfast.RollupFilter{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Count != 11 || rs[0].AmountSum != "55" {
		t.Fatalf("after a delivery twice in one batch, rollups = %+v, want one of 11 events summing 55 EUR", rs)
	}
}

// flaky applies a batch, then reports a failure the first n times: the
// effect committed but the acknowledgement never happened, so the batch
// comes back.
type flaky struct {
	events.Applier
	fails atomic.Int32
}

func (f *flaky) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	if err := f.Applier.ApplyEvents(ctx, batch); err != nil {
		return err
	}
	if f.fails.Add(-1) >= 0 {
		return errors.New("lost the acknowledgement")
	}
	return nil
}

func TestConsumers_RedeliveredThroughTheStream(t *testing.T) {
	t.Parallel()
	e := setup(t)
	f := &flaky{Applier: e.audit}
	f.fails.Store(2)
	e.start(t, e.relay(t), e.group(t, postgres.AuditGroup, f))
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	for i := 0; i < 10; i++ {
		e.mustTransfer(t, a, b, 1)
	}
	eventually(t, "the failed batches were delivered again", func() bool { return f.fails.Load() < 0 })
	eventually(t, "audit holds 12 records", func() bool { return e.auditCount(t) == 12 })
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK || v.Records != 12 {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}

// Pause stops delivery (the events wait in the stream as pending); resume
// continues from the same place and nothing is lost or applied twice.
func TestGroup_PauseAndResume(t *testing.T) {
	t.Parallel()
	e := setup(t)
	g := e.group(t, postgres.AuditGroup, e.audit)
	admin := events.NewAdmin(e.nats.JS, e.states, e.stream, g)
	e.start(t, e.relay(t), g)
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	eventually(t, "accounts audited", func() bool { return e.auditCount(t) == 2 })

	if err := admin.PauseConsumer(t.Context(), postgres.AuditGroup, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	e.waitPauseSeen(t, postgres.AuditGroup)
	for i := 0; i < 10; i++ {
		e.mustTransfer(t, a, b, 1)
	}
	eventually(t, "the stream holds the transfers", func() bool { return e.streamMsgs(t) == 12 })
	var st []*holdfast.ConsumerStatus
	eventually(t, "the transfers wait as pending", func() bool {
		var err error
		st, err = admin.ListConsumers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st[0].Pending == 10
	})
	time.Sleep(300 * time.Millisecond) // several fetch rounds, were the group not paused
	if got := e.auditCount(t); got != 2 {
		t.Fatalf("a paused group applied events: audit holds %d, want 2", got)
	}
	if st[0].LagMessages != 10 || !st[0].Paused || st[0].LastApplied != 2 || st[0].LagSeconds <= 0 {
		t.Fatalf("status while paused = %+v", st[0])
	}

	if err := admin.ResumeConsumer(t.Context(), postgres.AuditGroup); err != nil {
		t.Fatal(err)
	}
	eventually(t, "audit catches up after resume", func() bool { return e.auditCount(t) == 12 })
	eventually(t, "lag drains", func() bool {
		st, err := admin.ListConsumers(t.Context())
		return err == nil && st[0].LagMessages == 0 && st[0].LastApplied == 12 && !st[0].Paused
	})
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK || v.Records != 12 {
		t.Fatalf("verify = %+v, %v", v, err)
	}
	if err := admin.PauseConsumer(t.Context(), "nope", time.Time{}, ""); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("pause of an unknown group: %v", err)
	}
}

// overwhelmed fails like a database that times out, the first n times.
type overwhelmed struct {
	events.Applier
	fails atomic.Int32
}

func (o *overwhelmed) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	if o.fails.Add(-1) >= 0 {
		return fmt.Errorf("apply: %w", context.DeadlineExceeded)
	}
	return o.Applier.ApplyEvents(ctx, batch)
}

// A group whose downstream times out pauses itself for the cooldown (in
// the shared state, so every replica does), then resumes; nothing is lost.
func TestGroup_PausesItselfWhenOverwhelmed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	o := &overwhelmed{Applier: e.audit}
	o.fails.Store(1)
	g := e.group(t, postgres.AuditGroup, o, func(c *events.GroupConfig) { c.Cooldown = time.Second })
	e.start(t, e.relay(t), g)
	e.mustAccount(t, true)
	eventually(t, "the group paused itself", func() bool {
		st, err := e.states.State(t.Context(), postgres.AuditGroup)
		return err == nil && st.PausedUntil != nil && strings.HasPrefix(st.PauseReason, "auto:")
	})
	eventually(t, "the event is applied after the cooldown", func() bool { return e.auditCount(t) == 1 })
}

// The stream refuses events past its limits (discard-new): the publisher
// answers EOVERLOADED, and everything it accepted is stored.
func TestPublisher_FullStreamRefuses(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.stream.Name, e.stream.MaxBytes = e.stream.Name+"_small", 1<<20
	if _, err := events.EnsureStream(t.Context(), e.nats.JS, e.stream); err != nil {
		t.Fatal(err)
	}
	// The client events' share is the whole stream here: this test is of the stream's own limit.
	p, err := events.NewPublisher(e.nats.NC, events.PublisherConfig{Stream: e.stream, Logger: quiet, ClientMaxBytes: e.stream.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	props := []byte(`{"blob":"` + strings.Repeat("x", 3000) + `"}`)
	batch := make([]holdfast.EventCreate, 100)
	for i := range batch {
		batch[i] = holdfast.EventCreate{Type: "page.view", Properties: props}
	}
	var accepted uint64
	var refusal error
	for i := 0; i < 20 && refusal == nil; i++ {
		ids, err := p.PublishEvents(t.Context(), e.tenant, "", batch)
		if err != nil {
			refusal = err
			break
		}
		accepted += uint64(len(ids))
	}
	if !holdfast.IsCode(refusal, holdfast.EOVERLOADED) {
		t.Fatalf("publishing 2,000 × 3 KB into a 1 MiB stream: %v, want EOVERLOADED", refusal)
	}
	if !strings.Contains(holdfast.ErrorMessage(refusal), "full") {
		t.Errorf("refusal %q does not say the log is full", holdfast.ErrorMessage(refusal))
	}
	if got := e.streamMsgs(t); got < accepted {
		t.Fatalf("stream holds %d, fewer than the %d accepted", got, accepted)
	}
}

// A retry of a batch under the same Idempotency-Key stores nothing twice.
func TestPublisher_RetryWithKeyStoresOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p, err := events.NewPublisher(e.nats.NC, events.PublisherConfig{Stream: e.stream, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	batch := []holdfast.EventCreate{{Type: "checkout.started"}, {Type: "payment.attempted", Properties: []byte(`{"amount":100,"currency":"USD"}`)}}
	first, err := p.PublishEvents(t.Context(), e.tenant, "key-1", batch)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.PublishEvents(t.Context(), e.tenant, "key-1", batch)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(first) != fmt.Sprint(again) {
		t.Fatalf("ids differ on retry: %v then %v", first, again)
	}
	if got := e.streamMsgs(t); got != 2 {
		t.Fatalf("stream holds %d, want 2", got)
	}
	_, err = p.PublishEvents(t.Context(), e.tenant, "", []holdfast.EventCreate{{Type: "transfer.posted"}})
	if !holdfast.IsCode(err, holdfast.EINVALID) {
		t.Fatalf("a ledger type from a client: %v, want EINVALID", err)
	}
}

// A tenant's audit trail is chained: changing a record breaks it at that record.
func TestAudit_VerifyFindsTheFirstBreak(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.states.EnsureGroup(t.Context(), postgres.AuditGroup, e.stream.Name, "")
	batch := make([]holdfast.EventDelivery, 5)
	for i := range batch {
		ev := holdfast.Event{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Type: "x.y", TenantID: e.tenant, OccurredAt: time.Now()}
		batch[i] = holdfast.EventDelivery{Seq: uint64(i + 1), Event: ev, Raw: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	if err := e.audit.ApplyEvents(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); !v.OK || v.Records != 5 {
		t.Fatalf("verify = %+v", v)
	}
	if _, err := e.db.Pool.Exec(t.Context(), "UPDATE audit_records SET event = '{}' WHERE tenant_id = $1 AND seq = 3", e.tenant); err == nil {
		t.Fatal("an audit record was updated: the trail is not append-only")
	}
	_, err := e.db.Pool.Exec(t.Context(), `ALTER TABLE audit_records DISABLE TRIGGER audit_append_only;
		UPDATE audit_records SET event = '{"n":99}' WHERE seq = 3;
		ALTER TABLE audit_records ENABLE TRIGGER audit_append_only`)
	if err != nil {
		t.Fatal(err)
	}
	// Record 3 is behind the checkpoint the first call recorded at 5: a
	// verification from the start finds it.
	v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{FromStart: true})
	if err != nil || v.OK || v.FirstBad != 3 {
		t.Fatalf("verify after tampering = %+v, %v; want the break at 3", v, err)
	}
}

// The same log against an external nats-server (the machine's, which on
// Debian is 2.9: no server-side consumer pause; ours works by not fetching).
func TestLog_ExternalServer(t *testing.T) {
	t.Parallel()
	url := natstest.ExternalURL(t)
	e := setup(t, natsconn.Config{URL: url, Name: "holdfast-events-test"})
	g := e.group(t, postgres.AuditGroup, e.audit)
	admin := events.NewAdmin(e.nats.JS, e.states, e.stream, g)
	e.start(t, e.relay(t), g, e.group(t, postgres.AnalyticsGroup, e.analytics))
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	eventually(t, "accounts audited", func() bool { return e.auditCount(t) == 2 })
	if err := admin.PauseConsumer(t.Context(), postgres.AuditGroup, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	e.waitPauseSeen(t, postgres.AuditGroup)
	for i := 0; i < 5; i++ {
		e.mustTransfer(t, a, b, 1)
	}
	eventually(t, "the transfers wait as pending", func() bool {
		st, err := admin.ListConsumers(t.Context())
		return err == nil && st[0].Pending == 5
	})
	if got := e.auditCount(t); got != 2 {
		t.Fatalf("paused group applied events on the external server: %d", got)
	}
	if err := admin.ResumeConsumer(t.Context(), postgres.AuditGroup); err != nil {
		t.Fatal(err)
	}
	eventually(t, "audit catches up", func() bool { return e.auditCount(t) == 7 })
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}

// counting counts what one replica's group applied.
type counting struct {
	events.Applier
	n atomic.Int64
}

func (c *counting) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	if err := c.Applier.ApplyEvents(ctx, batch); err != nil {
		return err
	}
	c.n.Add(int64(len(batch)))
	return nil
}

// Two replicas of a group share its work (one durable consumer) and
// never apply an event twice.
func TestGroup_ReplicasShareTheWork(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var replicas []*counting
	for i := range 2 {
		nc, err := e.nats.Connect(t.Context(), fmt.Sprintf("replica-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.NC.Close() })
		c := &counting{Applier: e.audit}
		replicas = append(replicas, c)
		g, err := events.NewGroup(nc.JS, c, e.states, nil, events.GroupConfig{Name: postgres.AuditGroup, Stream: e.stream, Logger: quiet,
			MaxBatch: 5, FetchWait: 100 * time.Millisecond, StatePoll: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		e.start(t, g)
	}
	p, err := events.NewPublisher(e.nats.NC, events.PublisherConfig{Stream: e.stream, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		batch := make([]holdfast.EventCreate, 100)
		for i := range batch {
			batch[i] = holdfast.EventCreate{Type: "page.view"}
		}
		if _, err := p.PublishEvents(t.Context(), e.tenant, "", batch); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "audit holds 500 records", func() bool { return e.auditCount(t) == 500 })
	a, b := replicas[0].n.Load(), replicas[1].n.Load()
	t.Logf("replica 0 applied %d, replica 1 applied %d", a, b)
	if a == 0 || b == 0 {
		t.Fatalf("one replica did all the work: %d and %d", a, b)
	}
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK || v.Records != 500 {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}

// A group under pressure from the request path yields before each fetch,
// and still applies every event: it is slowed, never stopped.
func TestGroup_YieldsUnderPressure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var asked atomic.Int32
	g := e.group(t, postgres.AuditGroup, e.audit, func(c *events.GroupConfig) {
		c.MaxBatch, c.YieldDelay = 2, 10*time.Millisecond
		c.Yield = func() bool { asked.Add(1); return true }
	})
	e.start(t, e.relay(t), g)
	a, b := e.mustAccount(t, true), e.mustAccount(t, true)
	for i := 0; i < 10; i++ {
		e.mustTransfer(t, a, b, 1)
	}
	eventually(t, "audit holds 12 records while the group yields", func() bool { return e.auditCount(t) == 12 })
	// 12 events in batches of at most 2: at least 6 fetches, each after asking.
	if n := asked.Load(); n < 6 {
		t.Fatalf("Yield was asked %d times, want at least 6 (once per fetch)", n)
	}
	if v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); err != nil || !v.OK || v.Records != 12 {
		t.Fatalf("verify = %+v, %v", v, err)
	}
}

// A group-commit batch's events travel as one stream message per tenant and
// type. A relay that crashes after publishing such a message republishes it
// under the same id (stored once); a round takes rows up to its limit in
// events but always at least one row, whatever it holds; and the consumers
// apply every event of every message once, in chunks of about their
// MaxBatch (a message is never split).
func TestLog_BatchedEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var err error
	e.transfers, err = postgres.NewTransferServiceWith(e.db, postgres.TransferConfig{GroupCommit: true, Writer: postgres.WriterConfig{MaxBatch: 500}})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, e.transfers)
	a, b, c := e.mustAccount(t, true), e.mustAccount(t, false), e.mustAccount(t, false)

	// Hold a's row so that the first transfer's batch waits in the database
	// while the others queue behind it; they then commit as one batch.
	lock, err := e.db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background())
	if _, err := lock.Exec(t.Context(), "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", a); err != nil {
		t.Fatal(err)
	}
	const posted, rejected = 120, 10
	errs := make(chan error, posted+rejected)
	send := func(from, to string, amount int64) {
		_, _, err := e.transfers.CreateTransfers(context.Background(), holdfast.TransferRequest{TenantID: e.tenant, Transfers: []holdfast.TransferCreate{
			{DebitAccountID: from, CreditAccountID: to, Amount: amount, Currency: "USD"}}})
		errs <- err
	}
	go send(a, b, 1)
	eventually(t, "the first batch waiting for the lock", func() bool {
		var n int
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	for i := 1; i < posted; i++ {
		go send(a, b, int64(i+1))
	}
	for i := 0; i < rejected; i++ {
		go send(c, a, 5) // c has nothing and no overdraft: refused
	}
	eventually(t, "the rest queued", func() bool { return e.transfers.QueueDepth() == posted-1+rejected })
	lock.Rollback(t.Context())
	var refused int
	for i := 0; i < posted+rejected; i++ {
		if err := <-errs; holdfast.ErrorCode(err) == holdfast.EINSUFFICIENT {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused != rejected {
		t.Fatalf("%d refused, want %d", refused, rejected)
	}
	// Rows: 3 account.created and the first transfer.posted, single; the
	// batch's 119 transfer.posted and 10 transfer.rejected, packed.
	const total, messages = 3 + posted + rejected, 3 + 1 + 2

	e.relayCrashingOnce(t, 1000)
	if got := e.streamMsgs(t); got != messages {
		t.Fatalf("after the crash the stream holds %d messages, want %d", got, messages)
	}
	// Restarted with a limit of 3 events a round: the four single rows take
	// two rounds, the packed rows one each, whole.
	r, err := events.NewRelay(e.db, e.nats.JS, events.RelayConfig{Stream: e.stream, Logger: quiet, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	var rounds []int
	for {
		n, err := r.RelayOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		rounds = append(rounds, n)
	}
	if want := []int{3, 1, posted - 1, rejected}; fmt.Sprint(rounds) != fmt.Sprint(want) {
		t.Fatalf("rounds relayed %v events, want %v", rounds, want)
	}
	if got := e.streamMsgs(t); got != messages {
		t.Fatalf("after the republish the stream holds %d messages, want %d (duplicates stored)", got, messages)
	}

	e.start(t, e.group(t, postgres.AuditGroup, e.audit, func(c *events.GroupConfig) { c.MaxBatch = 7 }),
		e.group(t, postgres.AnalyticsGroup, e.analytics, func(c *events.GroupConfig) { c.MaxBatch = 7 }))
	eventually(t, "audit holds every event", func() bool { return e.auditCount(t) == total })
	v, err := e.audit.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{})
	if err != nil || !v.OK || v.Records != total {
		t.Fatalf("verify = %+v, %v", v, err)
	}
	var ids int64
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT count(DISTINCT event_id) FROM audit_records WHERE tenant_id = $1", e.tenant).Scan(&ids); err != nil || ids != total {
		t.Fatalf("%d distinct event ids in the audit trail, want %d (%v)", ids, total, err)
	}
	eventually(t, "analytics counts every posted and rejected transfer", func() bool {
		var n [2]int64
		for i, typ := range []string{holdfast.EventTransferPosted, holdfast.EventTransferRejected} {
			rs, err := e.analytics.ListRollups(t.Context(), e.tenant, holdfast.RollupFilter{
				From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				n[i] += r.Count
			}
		}
		return n == [2]int64{posted, rejected}
	})
}

// Two tenants may choose the same event id: deduplication in the shared
// stream is per tenant, so both events are stored, audited and counted,
// while a tenant's own retry of that id is still stored once.
func TestPublisher_SameIDInTwoTenantsStoresBoth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	other, _, err := postgres.NewTenantService(e.db).CreateTenant(t.Context(), holdfast.TenantCreate{Name: t.Name() + " other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := events.NewPublisher(e.nats.NC, events.PublisherConfig{Stream: e.stream, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, e.group(t, postgres.AnalyticsGroup, e.analytics), e.group(t, postgres.AuditGroup, e.audit))
	const id = "0190a0b0-0000-7000-8000-000000000001"
	batch := []holdfast.EventCreate{{ID: id, Type: "order.placed", Properties: []byte(`{"amount":100,"currency":"USD"}`)}}
	for _, tenant := range []string{e.tenant, other.ID, e.tenant} {
		ids, err := p.PublishEvents(t.Context(), tenant, "", batch)
		if err != nil || len(ids) != 1 || ids[0] != id {
			t.Fatalf("tenant %s: ids %v, %v", tenant, ids, err)
		}
	}
	if got := e.streamMsgs(t); got != 2 {
		t.Fatalf("stream holds %d messages, want 2: one per tenant", got)
	}
	for _, tenant := range []string{e.tenant, other.ID} {
		eventually(t, "each tenant's event audited once", func() bool {
			var n int64
			err := e.db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND event_id = $2", tenant, id).Scan(&n)
			return err == nil && n == 1
		})
		eventually(t, "each tenant's event counted once", func() bool {
			rs, err := e.analytics.ListRollups(t.Context(), tenant, holdfast.RollupFilter{
				From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Type: "order.placed"})
			return err == nil && len(rs) == 1 && rs[0].Count == 1 && rs[0].AmountSum == "100"
		})
	}
}
