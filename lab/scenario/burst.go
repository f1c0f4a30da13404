package scenario

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/events"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/lifecycle"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	register(Scenario{
		Name: "burst", Section: "Part 3, problem 2",
		Description: "events at 10× consumer speed: an unbounded in-memory queue vs the log (lag rises, drains, nothing lost) (reuses holdfast-lab bench events)",
		Run:         runBurst,
	})
}

// eventLab is a Holdfast serving POST /v1/events on the event log: the
// publisher, the consumer groups (audit, analytics) slowed by a delay per
// event, their admin, on a database of its own and an embedded JetStream.
type eventLab struct {
	db     *postgres.DB
	nats   *natsconn.Conn
	groups []*events.Group
	admin  *events.Admin
	server *holdfasthttp.Server
	dir    string
	Target *bench.EventTarget
	Tenant string
}

// startEventLab starts Holdfast's event log as `holdfast serve` wires it
// (app/events.go) on a fresh database, with the consumer delay,
// and a tenant whose key the target carries.
func startEventLab(ctx context.Context, env *Env, delay time.Duration) (_ *eventLab, err error) {
	l := &eventLab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	_, db, err := env.OpenDB(ctx, 16)
	if err != nil {
		return nil, err
	}
	l.db = db
	if l.dir, err = os.MkdirTemp("", "holdfast-lab-burst-"); err != nil {
		return nil, err
	}
	if l.nats, err = natsconn.Open(ctx, natsconn.Config{StoreDir: l.dir, Name: "holdfast-lab"}); err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	stream := events.StreamConfig{}.WithDefaults()
	if _, err := events.EnsureStream(ctx, l.nats.JS, stream); err != nil {
		return nil, err
	}
	publisher, err := events.NewPublisher(l.nats.NC, events.PublisherConfig{Stream: stream, Logger: quiet})
	if err != nil {
		return nil, err
	}
	states := postgres.NewConsumerStore(l.db)
	analytics, audit := postgres.NewAnalyticsService(l.db), postgres.NewAuditService(l.db)
	for _, g := range []struct {
		name    string
		applier events.Applier
	}{{postgres.AnalyticsGroup, analytics}, {postgres.AuditGroup, audit}} {
		group, err := events.NewGroup(l.nats.JS, g.applier, states, nil, events.GroupConfig{
			Name: g.name, Stream: stream, Delay: delay, Logger: quiet,
			FetchWait: 250 * time.Millisecond, StatePoll: 100 * time.Millisecond, // a pause is seen within a lag sample
		})
		if err != nil {
			return nil, fmt.Errorf("consumer group %s: %w", g.name, err)
		}
		if err := group.Start(ctx); err != nil {
			return nil, err
		}
		l.groups = append(l.groups, group)
	}
	l.admin = events.NewAdmin(l.nats.JS, states, stream, l.groups...)

	if l.server, err = holdfasthttp.NewServer(holdfasthttp.Config{Addr: "127.0.0.1:0", Logger: quiet}); err != nil {
		return nil, err
	}
	tenants := postgres.NewTenantService(l.db)
	l.server.TenantService = tenants
	l.server.IdempotencyService = postgres.NewIdempotencyService(l.db, 0)
	l.server.EventService = publisher
	l.server.AnalyticsService, l.server.AuditService, l.server.ConsumerService = analytics, audit, l.admin
	l.server.Ready = l.db.Ping
	if err := l.server.Open(); err != nil {
		l.server = nil
		return nil, err
	}
	tenant, key, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "lab burst"}, nil)
	if err != nil {
		return nil, err
	}
	l.Tenant = tenant.ID
	l.Target = bench.AdminTarget(l.server.URL(), key.Secret, l.admin, l.db.Pool)
	return l, nil
}

// close stops what started, in reverse order.
func (l *eventLab) close() {
	if l.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l.server.Close(ctx)
		cancel()
	}
	if l.Target != nil {
		l.Target.HTTP.CloseIdleConnections()
	}
	for i := len(l.groups) - 1; i >= 0; i-- {
		l.groups[i].Stop()
	}
	if l.nats != nil {
		l.nats.Close()
	}
	if l.db != nil {
		l.db.Close()
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// burstScenario is what the burst scenario measured.
type burstScenario struct {
	Holdfast    *bench.BurstResult `json:"holdfast"`
	Naive       *naive.BurstResult `json:"naive"`
	Delay       time.Duration      `json:"consumer_delay_ns"`
	Limit       int64              `json:"naive_limit_bytes"`
	PauseGroup  string             `json:"pause_group"`
	PausedAt    float64            `json:"paused_at_s"` // on the Holdfast run's clock
	ResumedAt   float64            `json:"resumed_at_s"`
	BurstFrom   float64            `json:"burst_from_s"`
	BurstTo     float64            `json:"burst_to_s"`
	PauseErrors []string           `json:"pause_errors,omitempty"`
}

// phaseClock timestamps bench.RunBurst's progress lines, passing them on to
// out: its run begins at the "before the burst" line, the burst at
// "burst:", the drain at "after:", when After is closed.
type phaseClock struct {
	out   io.Writer
	After chan struct{} // closed at the "after:" line

	mu                         sync.Mutex
	runStart, burstAt, afterAt time.Time
}

func (p *phaseClock) Write(b []byte) (int, error) {
	now := time.Now()
	p.mu.Lock()
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "before the burst"):
			p.runStart = now
		case strings.HasPrefix(line, "burst:"):
			p.burstAt = now
		case strings.HasPrefix(line, "after:"):
			if p.afterAt.IsZero() {
				p.afterAt = now
				close(p.After)
			}
		}
	}
	p.mu.Unlock()
	return p.out.Write(b)
}

// since returns t on the run's clock, in seconds.
func (p *phaseClock) since(t time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.IsZero() || p.runStart.IsZero() {
		return 0
	}
	return t.Sub(p.runStart).Seconds()
}

func runBurst(ctx context.Context, env *Env) (*report.Report, error) {
	delay := pick(env.Scale, 2*time.Millisecond, 500*time.Microsecond, 500*time.Microsecond)
	cfg := bench.BurstConfig{
		Batch:    pick(env.Scale, 10, 20, 20),
		Warmup:   pick(env.Scale, 500*time.Millisecond, 3*time.Second, 20*time.Second),
		Burst:    pick(env.Scale, 500*time.Millisecond, 5*time.Second, 30*time.Second),
		MaxDrain: pick(env.Scale, 2*time.Minute, 5*time.Minute, 15*time.Minute),
		Control:  pick(env.Scale, -time.Second, 3*time.Second, 10*time.Second),
	}
	pause := operatorPause{After: pick(env.Scale, 200*time.Millisecond, time.Second, 2*time.Second), For: pick(env.Scale, time.Second, 3*time.Second, 10*time.Second)}
	progress := env.Progress
	if progress == nil {
		progress = io.Discard
	}

	// Holdfast first: it measures the consumers' rate, which the naive
	// queue's consumer then gets.
	l, err := startEventLab(ctx, env, delay)
	if err != nil {
		return nil, err
	}
	defer l.close()
	res := &burstScenario{Delay: delay, PauseGroup: "audit"}
	env.progressf("burst: Holdfast's event log, consumers delayed %v per event", delay)
	if err := burstHoldfast(ctx, l, cfg, res, pause, progress); err != nil {
		return nil, err
	}
	h := res.Holdfast

	// The naive queue, at the same rates; its memory limit is half of what
	// the burst's backlog needs.
	backlog := (h.BurstRate - h.ConsumerRate) * cfg.Burst.Seconds()
	res.Limit = int64(backlog/2) * int64(len(naive.Event(1)))
	env.progressf("burst: the naive in-memory queue, memory limit %.1f MiB", float64(res.Limit)/(1<<20))
	res.Naive = naive.RunBurst(ctx, naive.BurstConfig{ConsumerRate: h.ConsumerRate, NormalRate: h.NormalRate, BurstRate: h.BurstRate,
		Warmup: cfg.Warmup, Burst: cfg.Burst, MaxDrain: cfg.MaxDrain, Limit: res.Limit})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return burstReport(ctx, l, cfg, res, pause), nil
}

// operatorPause is an operator's pause of one consumer group during the
// drain: After into it, for For.
type operatorPause struct{ After, For time.Duration }

// burstHoldfast runs the burst against Holdfast's event log while an
// operator pauses res.PauseGroup, and puts the run, the pause and the
// burst's phases (on the run's clock) into res.
func burstHoldfast(ctx context.Context, l *eventLab, cfg bench.BurstConfig, res *burstScenario, pause operatorPause, progress io.Writer) error {
	clock := &phaseClock{out: progress, After: make(chan struct{})}
	benchDone := make(chan struct{})
	var pausedAt, resumedAt time.Time
	var pausing sync.WaitGroup
	pausing.Go(func() {
		select {
		case <-clock.After:
		case <-benchDone:
			return
		}
		pausedAt, resumedAt = pauseGroup(ctx, l, res, pause, progress)
	})
	cfg.Tenant, cfg.Progress = l.Tenant, clock
	var err error
	res.Holdfast, err = bench.RunBurst(ctx, l.Target, cfg)
	close(benchDone)
	pausing.Wait()
	if err != nil {
		return err
	}
	res.PausedAt, res.ResumedAt = clock.since(pausedAt), clock.since(resumedAt)
	res.BurstFrom, res.BurstTo = clock.since(clock.burstAt), clock.since(clock.afterAt)
	return nil
}

// pauseGroup waits pause.After, pauses res.PauseGroup through the admin
// API, resumes it pause.For later, and returns when it did each; an error
// of either is kept in res.
func pauseGroup(ctx context.Context, l *eventLab, res *burstScenario, pause operatorPause, progress io.Writer) (pausedAt, resumedAt time.Time) {
	lifecycle.Sleep(ctx, pause.After)
	pctx := context.WithoutCancel(ctx)
	err := l.admin.PauseConsumer(pctx, res.PauseGroup, time.Time{}, "lab: an operator's pause")
	pausedAt = time.Now()
	if err == nil {
		fmt.Fprintf(progress, "  paused %s for %v\n", res.PauseGroup, pause.For)
		lifecycle.Sleep(ctx, pause.For)
		err = l.admin.ResumeConsumer(pctx, res.PauseGroup)
	}
	resumedAt = time.Now()
	if err != nil {
		res.PauseErrors = append(res.PauseErrors, err.Error())
	}
	return pausedAt, resumedAt
}

func burstReport(ctx context.Context, l *eventLab, cfg bench.BurstConfig, res *burstScenario, pause operatorPause) *report.Report {
	h, n := res.Holdfast, res.Naive
	drain := "not drained"
	if h.Drained {
		drain = fmt.Sprintf("%.1f s", h.Drain.Seconds())
	}
	naiveOutcome := fmt.Sprintf("killed %.1f s into the run, %d events queued (%.1f MiB)", n.KilledAt.Seconds(), n.Lost, float64(res.Limit)/(1<<20))
	if !n.Killed {
		naiveOutcome = fmt.Sprintf("survived; drained in %.1f s", n.Drain.Seconds())
	}
	r := &report.Report{
		Claim: `Events arrive at 10× the rate the consumers can process them. With an in-memory queue […] memory
climbs until the process is killed, and every event in the queue dies with it — or the queue drops events
to survive. With a log, the backlog is on disk: consumer lag rises during the burst, then drains; nothing is
lost, and a consumer can be paused and resumed without losing its place.`,
		Measured: fmt.Sprintf(`holdfast-lab bench events' burst harness (bench.RunBurst), unchanged, against Holdfast's event log: POST
/v1/events on loopback into an embedded JetStream, two consumer groups (audit, analytics) delayed %v per event
(a slow downstream). It measures the consumers' rate, then produces at 0.25× that for %v, at 10× for %v,
then at 0.25× until the lag is back, sampling the lag every 250 ms; %v after the burst the %s group is paused
for %v through the admin API and resumed. Then the naive way at the same rates in this process: events
appended to a Go slice (naive.MemoryQueue) that one consumer drains at the same rate, with a memory limit set to
half of what the burst's backlog needs (the container's limit, scaled to the run): past it the process is
killed and the queue's events are lost.`,
			res.Delay, cfg.Warmup, cfg.Burst, pause.After, res.PauseGroup, pause.For),
		Columns: []string{"way", "peak backlog", "after the burst", "produced", "applied", "lost", "duplicated"},
		Data:    res,
	}
	r.Rows = [][]string{
		{"naive: in-memory queue", fmt.Sprintf("%d events, %.1f MiB (heap %.0f → %.0f MiB)", n.PeakQueued, n.PeakMiB, n.StartHeap, n.PeakHeap), naiveOutcome,
			fmt.Sprint(n.Produced), fmt.Sprint(n.Consumed), fmt.Sprint(n.Lost), "0"},
		{"Holdfast: the log", fmt.Sprintf("lag %d events", h.PeakLag), "drained in " + drain + fmt.Sprintf(" (with a %v pause)", pause.For),
			fmt.Sprint(h.Produced), fmt.Sprintf("audit %d, analytics %d", h.Audited, h.Analyzed), fmt.Sprint(h.Lost), fmt.Sprint(h.Duplicated)},
	}
	pp := report.Ratio(float64(h.During.P99), float64(h.Before.P99))
	r.Findings = []string{
		fmt.Sprintf("consumers sustain %.0f events/s; offered %.0f/s normally and %.0f/s in the burst", h.ConsumerRate, h.NormalRate, h.BurstRate),
		fmt.Sprintf("naive: %s; lost %d events", naiveOutcome, n.Lost),
		fmt.Sprintf("Holdfast: peak lag %d events, drained %s after the burst; produced %d, audited %d, analytics %d: lost %d, duplicated %d",
			h.PeakLag, drain, h.Produced, h.Audited, h.Analyzed, h.Lost, h.Duplicated),
		fmt.Sprintf("producer p99 before the burst %s, during %s (%.1f×)", msec1(h.Before.P99), msec1(h.During.P99), pp),
		fmt.Sprintf("the %s group paused at %.1f s and resumed at %.1f s: its lag held the events, none lost", res.PauseGroup, res.PausedAt, res.ResumedAt),
	}
	if len(h.Refusals) > 0 {
		var refused int64
		for _, n := range h.Refusals {
			refused += n
		}
		r.Findings = append(r.Findings, fmt.Sprintf("%d requests (%d events) refused, by status %v: the API's backpressure (503: the publisher's in-flight window was full); "+
			"the producer was told to retry, and nothing acknowledged was lost", refused, refused*int64(cfg.Batch), h.Refusals))
	}
	if len(res.PauseErrors) > 0 {
		r.Findings = append(r.Findings, "pause/resume errors: "+strings.Join(res.PauseErrors, "; "))
	}
	var lag, queued []report.Point
	for _, s := range h.Samples {
		lag = append(lag, report.Point{X: float64(s.AtMS) / 1000, Y: float64(s.Lag)})
	}
	for _, s := range n.Samples {
		queued = append(queued, report.Point{X: float64(s.AtMS) / 1000, Y: float64(s.Queued)})
	}
	r.Chart = &report.Chart{Title: "Events waiting: consumer lag of the log vs an in-memory queue", XLabel: "seconds", YLabel: "events waiting",
		Series: []report.Series{{Name: "naive: in-memory queue", Points: queued}, {Name: "Holdfast: consumer lag", Points: lag}},
		Markers: []report.Marker{{X: res.BurstFrom, Label: "burst (10×)"}, {X: res.BurstTo, Label: "burst ends: 0.25×"},
			{X: res.PausedAt, Label: res.PauseGroup + " paused"}, {X: res.ResumedAt, Label: res.PauseGroup + " resumed"}}}
	if n.Killed {
		r.Chart.Markers = append(r.Chart.Markers, report.Marker{X: n.KilledAt.Seconds(), Label: fmt.Sprintf("naive killed: %d lost", n.Lost)})
	}
	r.PostgreSQL = serverVersion(ctx, l.db.Pool)
	return r
}
