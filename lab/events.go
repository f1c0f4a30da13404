package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/holdfast/holdfast/events"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// EventTarget is a running Holdfast whose event log a benchmark drives:
// its API, and hooks into its consumer groups.
type EventTarget struct {
	URL, Key string
	HTTP     *http.Client
	// Lag returns the consumer groups' largest lag, in events.
	Lag func(ctx context.Context) (int64, error)
	// Applied returns what the groups applied for one tenant: audit
	// records, and the analytics count of events.
	Applied func(ctx context.Context, tenant string) (audit, analytics int64, err error)
	// Pause and Resume steer both consumer groups.
	Pause, Resume func(ctx context.Context) error
}

// EventBody returns a POST /v1/events body of n client events of typical
// size (a payment attempt with a few properties, about 150 bytes each).
func EventBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"payment.attempted","properties":{"amount":%d,"currency":"EUR","method":"card","card_brand":"visa","session":"s-%06d"}}`, 100+i, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// PostEvents sends one batch and returns how many events the log accepted
// (0 on a refusal).
func (t *EventTarget) PostEvents(ctx context.Context, body []byte) (int, error) {
	n, _, err := t.postEvents(ctx, body)
	return n, err
}

// postEvents is PostEvents that also returns the response's status.
func (t *EventTarget) postEvents(ctx context.Context, body []byte) (int, int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", t.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.Key)
	req.Header.Set("Content-Type", "application/json")
	c := t.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return 0, resp.StatusCode, nil
	}
	var out struct {
		Accepted int `json:"accepted"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, resp.StatusCode, err
	}
	return out.Accepted, resp.StatusCode, nil
}

// IngestResult compares ingest through the API with raw JetStream publishing.
type IngestResult struct {
	Batch, Clients   int
	Holdfast, Raw    float64 // events per second
	HoldfastRefused  int64   // batches answered with anything but 202
	Ratio            float64 // Holdfast / Raw
	HoldfastDuration time.Duration
}

// BenchIngest measures events per second stored through POST /v1/events
// (clients concurrent batches of batch events, for d) and, as the limit,
// publishing the same envelopes straight to a JetStream stream of the same
// storage in-process (clients concurrent publishers, each sending batch
// messages asynchronously and waiting for their acks, as the API does).
// The consumer groups are paused meanwhile, so neither side competes with them.
func BenchIngest(ctx context.Context, t *EventTarget, js njs.JetStream, rawStream string, clients, batch int, d time.Duration) (IngestResult, error) {
	res := IngestResult{Batch: batch, Clients: clients}
	if t.Pause != nil {
		if err := t.Pause(ctx); err != nil {
			return res, err
		}
		defer t.Resume(context.WithoutCancel(ctx))
	}
	body := EventBody(batch)
	var accepted, refused atomic.Int64
	r := ClosedLoop(ctx, "ingest", clients, d, func(ctx context.Context, _ int, _ int64) (bool, error) {
		n, err := t.PostEvents(ctx, body)
		if err == nil && n == 0 {
			refused.Add(1)
		}
		accepted.Add(int64(n))
		return n > 0, err
	})
	res.Holdfast, res.HoldfastRefused, res.HoldfastDuration = float64(accepted.Load())/r.Elapsed.Seconds(), refused.Load(), r.Elapsed

	// The same envelopes, published raw.
	env := rawEnvelope()
	var stored atomic.Int64
	var firstErr error
	var once sync.Once
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			futures := make([]njs.PubAckFuture, 0, batch)
			for rctx.Err() == nil {
				futures = futures[:0]
				for range batch {
					f, err := js.PublishMsgAsync(&nats.Msg{Subject: rawStream + ".bench", Data: env}, njs.WithMsgID(uuid.NewString()))
					if err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					futures = append(futures, f)
				}
				for _, f := range futures {
					select {
					case <-f.Ok():
						stored.Add(1)
					case err := <-f.Err():
						once.Do(func() { firstErr = err })
					}
				}
			}
		})
	}
	wg.Wait()
	res.Raw = float64(stored.Load()) / time.Since(start).Seconds()
	if res.Raw > 0 {
		res.Ratio = res.Holdfast / res.Raw
	}
	if firstErr != nil {
		return res, fmt.Errorf("raw publish: %w", firstErr)
	}
	return res, nil
}

// rawEnvelope is an envelope like the ones Holdfast builds for EventBody's events.
func rawEnvelope() []byte {
	return []byte(`{"id":"` + uuid.NewString() + `","type":"payment.attempted","version":1,"source":"client","tenant":"` + uuid.NewString() +
		`","occurred_at":"2026-11-28T10:00:00.123456Z","data":{"amount":100,"currency":"EUR","method":"card","card_brand":"visa","session":"s-000001"}}`)
}

// LagSample is the consumers' lag at a moment of a burst run.
type LagSample struct {
	AtMS  int64  `json:"at_ms"` // since the run began
	Lag   int64  `json:"lag"`
	Phase string `json:"phase"`
}

// BurstResult is what a burst run measured.
type BurstResult struct {
	ConsumerRate          float64       // events per second the slowed consumers sustain (measured)
	NormalRate, BurstRate float64       // events per second offered
	Before, During        Result        // producer requests before and during the burst
	Control               Result        // the burst rate again, consumers paused: what the rate alone costs
	PeakLag               int64         // events
	Drain                 time.Duration // from the burst's end until the lag was back to normal
	Drained               bool
	Produced              int64         // events acknowledged (202) during the run
	Audited, Analyzed     int64         // what the consumers applied for the run's tenant
	Lost                  int64         // Produced - min(Audited, Analyzed); must be 0
	Duplicated            int64         // max(Audited, Analyzed) - Produced; must be 0
	Refusals              map[int]int64 // responses other than 202, by status
	Samples               []LagSample
}

// BurstConfig shapes a burst run.
type BurstConfig struct {
	Tenant     string        // the tenant the target's key belongs to
	Batch      int           // events per request; default 20
	Warmup     time.Duration // normal rate before the burst; default 20s
	Burst      time.Duration // 10× the consumers' rate; default 30s
	MaxDrain   time.Duration // give up waiting for the lag after this; default 10m
	Multiplier float64       // burst rate / consumer rate; default 10
	Normal     float64       // normal rate / consumer rate; default 0.25
	Control    time.Duration // after the check, the burst rate with consumers paused; default 10s; negative: none
	Progress   io.Writer     // a line per phase; default none
}

// BenchBurst measures the consumers' rate, then produces at a normal rate,
// then at Multiplier × the consumers' rate for Burst, then at the normal
// rate again until the lag is back; it samples the lag every 250 ms and
// finally checks that the consumers applied exactly what was produced.
func BenchBurst(ctx context.Context, t *EventTarget, cfg BurstConfig) (*BurstResult, error) {
	if cfg.Batch == 0 {
		cfg.Batch = 20
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 20 * time.Second
	}
	if cfg.Burst == 0 {
		cfg.Burst = 30 * time.Second
	}
	if cfg.MaxDrain == 0 {
		cfg.MaxDrain = 10 * time.Minute
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = 10
	}
	if cfg.Normal == 0 {
		cfg.Normal = 0.25
	}
	if cfg.Control == 0 {
		cfg.Control = 10 * time.Second
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	res := &BurstResult{Refusals: map[int]int64{}}
	body := EventBody(cfg.Batch)
	var produced atomic.Int64
	var refusalsMu sync.Mutex
	post := func(ctx context.Context, _ int, _ int64) (bool, error) {
		n, status, err := t.postEvents(ctx, body)
		produced.Add(int64(n))
		if err == nil && status != http.StatusAccepted {
			refusalsMu.Lock()
			res.Refusals[status]++
			refusalsMu.Unlock()
		}
		return n > 0, err
	}

	// The consumers' rate: a backlog produced while they are paused, drained.
	if err := t.Pause(ctx); err != nil {
		return nil, err
	}
	const backlogBatches = 250
	for range backlogBatches {
		if _, err := post(ctx, 0, 0); err != nil {
			t.Resume(ctx)
			return nil, err
		}
	}
	backlog, err := t.Lag(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := t.Resume(ctx); err != nil {
		return nil, err
	}
	for {
		lag, err := t.Lag(ctx)
		if err != nil {
			return nil, err
		}
		if lag == 0 {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.ConsumerRate = float64(backlog) / time.Since(start).Seconds()
	res.NormalRate, res.BurstRate = cfg.Normal*res.ConsumerRate, cfg.Multiplier*res.ConsumerRate
	fmt.Fprintf(progress, "  consumers sustain %.0f events/s; normal %.0f/s, burst %.0f/s\n", res.ConsumerRate, res.NormalRate, res.BurstRate)

	// Sample the lag throughout.
	runStart := time.Now()
	var mu sync.Mutex
	phase := "before"
	sctx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			lag, err := t.Lag(sctx)
			if err != nil {
				continue
			}
			mu.Lock()
			res.Samples = append(res.Samples, LagSample{AtMS: time.Since(runStart).Milliseconds(), Lag: lag, Phase: phase})
			res.PeakLag = max(res.PeakLag, lag)
			mu.Unlock()
		}
	})
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	reqRate := func(events float64) float64 { return max(events/float64(cfg.Batch), 0.5) }

	fmt.Fprintf(progress, "  before the burst: %s at %.0f events/s\n", cfg.Warmup, res.NormalRate)
	res.Before = OpenLoop(ctx, "before", reqRate(res.NormalRate), cfg.Warmup, 4096, post)
	setPhase("burst")
	fmt.Fprintf(progress, "  burst: %s at %.0f events/s\n", cfg.Burst, res.BurstRate)
	res.During = OpenLoop(ctx, "burst", reqRate(res.BurstRate), cfg.Burst, 4096, post)
	setPhase("after")
	burstEnd := time.Now()
	fmt.Fprintf(progress, "  after: normal rate until the lag is back (at most %s)\n", cfg.MaxDrain)
	// Back to normal: no more lag than twice the most seen before the
	// burst (at the normal rate the groups always hold a batch or two).
	normalLag := int64(2 * cfg.Batch)
	mu.Lock()
	for _, s := range res.Samples {
		if s.Phase == "before" {
			normalLag = max(normalLag, 2*s.Lag)
		}
	}
	mu.Unlock()
	for time.Since(burstEnd) < cfg.MaxDrain && ctx.Err() == nil {
		OpenLoop(ctx, "after", reqRate(res.NormalRate), time.Second, 4096, post)
		lag, err := t.Lag(ctx)
		if err == nil && lag <= normalLag {
			res.Drain, res.Drained = time.Since(burstEnd), true
			break
		}
	}
	stopSampling()
	sampling.Wait()

	// Exactly what was produced, once: wait for the last events to be applied.
	res.Produced = produced.Load()
	fmt.Fprintf(progress, "  checking: %d events produced\n", res.Produced)
	deadline := time.Now().Add(cfg.MaxDrain)
	for {
		res.Audited, res.Analyzed, err = t.Applied(ctx, cfg.Tenant)
		if err != nil {
			return nil, err
		}
		if res.Audited >= res.Produced && res.Analyzed >= res.Produced || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.Lost = max(0, res.Produced-min(res.Audited, res.Analyzed))
	res.Duplicated = max(0, max(res.Audited, res.Analyzed)-res.Produced)

	// The control: the burst's rate with the consumers doing nothing at all.
	// If the producers' p99 is the same as during the burst, what raised it
	// was the request rate on this machine, not the consumers' slowness.
	if cfg.Control > 0 {
		fmt.Fprintf(progress, "  control: %s at %.0f events/s with the consumers paused\n", cfg.Control, res.BurstRate)
		if err := t.Pause(ctx); err != nil {
			return nil, err
		}
		res.Control = OpenLoop(ctx, "burst rate, consumers paused", reqRate(res.BurstRate), cfg.Control, 4096,
			func(ctx context.Context, _ int, _ int64) (bool, error) {
				n, err := t.PostEvents(ctx, body)
				return n > 0, err
			})
		if err := t.Resume(ctx); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// PrintIngest writes an ingest comparison.
func PrintIngest(w io.Writer, r IngestResult) {
	fmt.Fprintf(w, "%-40s %14s\n", "ingest (batches of "+fmt.Sprint(r.Batch)+", "+fmt.Sprint(r.Clients)+" clients)", "events/s")
	fmt.Fprintf(w, "%-40s %14.0f\n", "Holdfast POST /v1/events", r.Holdfast)
	fmt.Fprintf(w, "%-40s %14.0f\n", "raw JetStream async publish (limit)", r.Raw)
	fmt.Fprintf(w, "%-40s %14.2f×\n", "Holdfast / raw", r.Ratio)
	if r.HoldfastRefused > 0 {
		fmt.Fprintf(w, "%-40s %14d\n", "batches refused (503)", r.HoldfastRefused)
	}
}

// PrintBurst writes a burst run's figures.
func PrintBurst(w io.Writer, r *BurstResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(w, "consumers (slowed) sustain      %10.0f events/s\n", r.ConsumerRate)
	fmt.Fprintf(w, "offered: normal %.0f/s, burst %.0f/s (%.0f×)\n", r.NormalRate, r.BurstRate, r.BurstRate/max(r.ConsumerRate, 1))
	fmt.Fprintf(w, "%-30s %12s %12s %10s %10s\n", "producer", "p50", "p99", "ok", "refused")
	for _, x := range []Result{r.Before, r.During, r.Control} {
		if x.Name == "" {
			continue
		}
		fmt.Fprintf(w, "%-30s %12s %12s %10d %10d\n", x.Name, ms(x.P50), ms(x.P99), x.OK, x.Failed+x.Errors)
	}
	ratio := 0.0
	if r.Before.P99 > 0 {
		ratio = float64(r.During.P99) / float64(r.Before.P99)
	}
	fmt.Fprintf(w, "producer p99 during / before burst: %.2f×\n", ratio)
	if r.Control.P99 > 0 {
		fmt.Fprintf(w, "producer p99 during the burst / at its rate with consumers paused (control): %.2f×\n", float64(r.During.P99)/float64(r.Control.P99))
	}
	if len(r.Refusals) > 0 {
		fmt.Fprintf(w, "refused by status: %v\n", r.Refusals)
	}
	drain := "not drained"
	if r.Drained {
		drain = fmt.Sprintf("%.1f s", r.Drain.Seconds())
	}
	fmt.Fprintf(w, "peak lag %d events; drain time %s\n", r.PeakLag, drain)
	fmt.Fprintf(w, "produced %d, audited %d, analytics %d: lost %d, duplicated %d\n", r.Produced, r.Audited, r.Analyzed, r.Lost, r.Duplicated)
	var b strings.Builder
	step := max(1, len(r.Samples)/24)
	for i := 0; i < len(r.Samples); i += step {
		s := r.Samples[i]
		fmt.Fprintf(&b, " %.0fs:%d", float64(s.AtMS)/1000, s.Lag)
	}
	fmt.Fprintf(w, "lag over time:%s\n", b.String())
}

// AdminTarget returns the EventTarget of a Holdfast at url (as the tenant
// of key) whose consumer groups admin steers and whose database pool
// counts what they applied.
func AdminTarget(url, key string, admin *events.Admin, pool *pgxpool.Pool) *EventTarget {
	steer := func(ctx context.Context, pause bool) error {
		list, err := admin.ListConsumers(ctx)
		if err != nil {
			return err
		}
		for _, c := range list {
			if pause {
				err = admin.PauseConsumer(ctx, c.Name, time.Time{}, "lab")
			} else {
				err = admin.ResumeConsumer(ctx, c.Name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return &EventTarget{
		URL: url, Key: key,
		HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		Lag: func(ctx context.Context) (int64, error) {
			list, err := admin.ListConsumers(ctx)
			if err != nil {
				return 0, err
			}
			var lag int64
			for _, c := range list {
				lag = max(lag, int64(c.LagMessages))
			}
			return lag, nil
		},
		Applied: func(ctx context.Context, tenant string) (audit, analytics int64, err error) {
			err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_records WHERE tenant_id = $1),
				(SELECT coalesce(sum(count), 0) FROM analytics_minutes WHERE tenant_id = $1)`, tenant).Scan(&audit, &analytics)
			return audit, analytics, err
		},
		Pause:  func(ctx context.Context) error { return steer(ctx, true) },
		Resume: func(ctx context.Context) error { return steer(ctx, false) },
	}
}
