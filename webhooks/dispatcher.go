package webhooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// Config configures a Dispatcher.
type Config struct {
	// Timeout bounds one attempt, connecting included: success is a 2xx
	// within it. Default 15s.
	Timeout time.Duration
	// Schedule is the delay before each attempt. Default DefaultSchedule.
	Schedule Schedule
	// Breaker configures the endpoints' circuit breakers and disabling.
	Breaker BreakerConfig
	// PerEndpoint caps one endpoint's attempts in flight, across
	// replicas. Default 4.
	PerEndpoint int
	// MaxInFlight caps this replica's attempts in flight, hence its
	// outbound connections. Default 64.
	MaxInFlight int
	// Rate caps one endpoint's attempts per second from this replica (a
	// token bucket of burst PerEndpoint); negative: no cap. Default 50.
	Rate float64
	// Lease is how long a delivery stays leased to the replica attempting
	// it: if that replica dies, the delivery is due again after it.
	// Default 2 × Timeout.
	Lease time.Duration
	// Poll is how often the dispatcher looks for due deliveries when
	// nothing woke it. Default 250ms.
	Poll time.Duration
	// AllowPrivate lets endpoints reach loopback, private and link-local
	// addresses (development and tests). Default false.
	AllowPrivate bool
	// ResponseLimit is the most bytes of a response body read. Default 4 KiB.
	ResponseLimit int64
	// Cipher opens the endpoints' sealed secrets. Required.
	Cipher *Cipher
	// Metrics, if set, counts attempts and measures delivery.
	Metrics *Metrics
	// Logger receives failures to record. Default slog.Default().
	Logger *slog.Logger
	// Now returns the current time (a fake clock in tests). Default time.Now.
	Now func() time.Time
	// Rand draws the schedule's jitter. Default rand.Float64.
	Rand func() float64
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	c.Breaker = c.Breaker.WithDefaults()
	if c.PerEndpoint == 0 {
		c.PerEndpoint = 4
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 64
	}
	if c.Rate == 0 {
		c.Rate = 50
	}
	if c.Lease == 0 {
		c.Lease = 2 * c.Timeout
	}
	if c.Poll == 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.ResponseLimit == 0 {
		c.ResponseLimit = 4 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.Cipher == nil {
		return errors.New("webhooks: a Cipher is required")
	}
	if c.Timeout <= 0 || c.PerEndpoint < 1 || c.MaxInFlight < 1 || c.Lease <= c.Timeout || c.Poll <= 0 || c.ResponseLimit < 0 || len(c.Schedule) == 0 {
		return errors.New("webhooks: Timeout, PerEndpoint, MaxInFlight and Poll must be positive, Lease longer than Timeout, Schedule not empty")
	}
	return nil
}

// Dispatcher delivers due deliveries: it leases as many as it has free
// slots (MaxInFlight), each endpoint's capped by PerEndpoint, posts them
// concurrently and records each attempt. An endpoint that is slow or down
// holds at most PerEndpoint slots, and its breaker soon holds none.
type Dispatcher struct {
	cfg    Config
	store  Store
	client *http.Client
	run    lifecycle.Runner
	wake   chan struct{}
	slots  chan struct{}
	rates  *rates
	wg     sync.WaitGroup
	// backlog is set while the last lease filled every free slot.
	backlog atomic.Bool
}

// NewDispatcher returns a dispatcher on store; it does nothing until Start.
func NewDispatcher(store Store, cfg Config) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:                 nil, // never through a proxy: the address checked is the one connected to
		DialContext:           guardedDialer(net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}, cfg.AllowPrivate).DialContext,
		MaxIdleConns:          cfg.MaxInFlight,
		MaxIdleConnsPerHost:   cfg.PerEndpoint,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: transport,
		// A redirect is not followed: it is an answer other than 2xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	d := &Dispatcher{cfg: cfg, store: store, client: client, wake: make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.MaxInFlight), rates: newRates(max(cfg.Rate, 0), cfg.PerEndpoint)}
	return d, nil
}

// Wake makes the dispatcher look for due deliveries now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Start runs the dispatcher until Stop.
func (d *Dispatcher) Start(ctx context.Context) error {
	ctx = d.run.Start(ctx)
	d.run.Go(func() { d.loop(ctx) })
	return nil
}

// Stop stops leasing, cancels the attempts in flight and gives their
// deliveries back (due at once, the attempt not counted), and waits.
// Idempotent; safe before Start.
func (d *Dispatcher) Stop() {
	d.run.Stop()
	d.wg.Wait()
	d.client.CloseIdleConnections()
}

func (d *Dispatcher) loop(ctx context.Context) {
	for ctx.Err() == nil {
		full, err := d.dispatch(ctx)
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("webhooks: lease", "err", err)
		}
		d.backlog.Store(full && err == nil)
		if full && err == nil {
			continue // every free slot was filled: there may be more due
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-time.After(d.cfg.Poll):
		}
	}
}

// dispatch leases as many due deliveries as there are free slots and
// starts them; it reports whether it filled every free slot (more may be
// due). A finished attempt frees its slot, and wakes the loop only then:
// otherwise each attempt would cost a lease statement that finds nothing.
func (d *Dispatcher) dispatch(ctx context.Context) (bool, error) {
	free := cap(d.slots) - len(d.slots)
	if free == 0 {
		// Every slot is busy: wait for one.
		select {
		case d.slots <- struct{}{}:
			<-d.slots
		case <-ctx.Done():
		}
		return true, nil
	}
	ds, err := d.store.Lease(ctx, d.lease(free))
	if err != nil {
		return false, err
	}
	for _, dl := range ds {
		d.slots <- struct{}{}
		d.wg.Go(func() {
			defer func() {
				<-d.slots
				if d.backlog.Load() {
					d.Wake()
				}
			}()
			d.Deliver(ctx, dl)
		})
	}
	return len(ds) == free, nil
}

// lease asks for up to n due deliveries, none of an endpoint whose rate
// is used up.
func (d *Dispatcher) lease(n int) Lease {
	now := d.cfg.Now()
	return Lease{Now: now, Max: n, PerEndpoint: d.cfg.PerEndpoint, Threshold: d.cfg.Breaker.Threshold, For: d.cfg.Lease,
		Exclude: d.rates.empty(now)}
}

// RunOnce leases the deliveries due now and delivers them, waiting for
// every attempt; it returns how many were attempted. Tests drive a
// dispatcher that was not started with it, on a fake clock.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	ds, err := d.store.Lease(ctx, d.lease(d.cfg.MaxInFlight))
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, dl := range ds {
		wg.Go(func() { d.Deliver(ctx, dl) })
	}
	wg.Wait()
	return len(ds), nil
}

// Deliver makes one attempt of a leased delivery and records it. When ctx
// ends first (a stop), nothing is recorded: the lease runs out and the
// delivery is due again, as after a crash.
func (d *Dispatcher) Deliver(ctx context.Context, dl *Delivery) {
	if !d.rates.wait(ctx, dl.EndpointID, d.cfg.Now()) {
		return // stopping: the lease runs out
	}
	o := d.attempt(ctx, dl)
	if ctx.Err() != nil {
		return
	}
	now := d.cfg.Now()
	if o.Result != holdfast.WebhookSucceeded {
		if next, ok := d.cfg.Schedule.Next(dl.Attempt, now, d.cfg.Rand); ok {
			o.Next = &next
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	disabled, err := d.store.Record(rctx, o, func(h Health) (Health, bool) {
		return h.After(o.Result == holdfast.WebhookSucceeded, now, d.cfg.Breaker)
	})
	if err != nil {
		// Not recorded: the lease runs out and the delivery is attempted again.
		d.cfg.Logger.Error("webhooks: record attempt", "endpoint", dl.EndpointID, "message", dl.MessageID, "err", err)
		return
	}
	if disabled {
		d.cfg.Logger.Warn("webhooks: endpoint disabled after failing too long", "tenant", dl.TenantID, "endpoint", dl.EndpointID)
	}
	d.cfg.Metrics.attempted(o, now)
}

// attempt posts the message and classifies the answer.
func (d *Dispatcher) attempt(ctx context.Context, dl *Delivery) *Outcome {
	o := &Outcome{Delivery: dl, StartedAt: d.cfg.Now()}
	start := time.Now()
	defer func() { o.Latency = time.Since(start) }()
	signer, err := d.signer(dl, o.StartedAt)
	if err != nil {
		o.Result, o.Error = holdfast.WebhookFailed, err.Error()
		return o
	}
	actx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, dl.URL, byteReader(dl.Body))
	if err != nil {
		o.Result, o.Error = holdfast.WebhookFailed, "the endpoint's URL cannot be requested"
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Holdfast-Webhooks/1")
	req.Header.Set(HeaderID, dl.MessageID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(o.StartedAt.Unix(), 10))
	req.Header.Set(HeaderSignature, signer.Sign(dl.MessageID, o.StartedAt, dl.Body))
	resp, err := d.client.Do(req)
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		o.Result, o.Error = holdfast.WebhookRefused, "the endpoint resolves to a loopback, private, link-local or reserved address"
		return o
	case err != nil && actx.Err() != nil && ctx.Err() == nil:
		o.Result, o.Error = holdfast.WebhookTimeout, fmt.Sprintf("no answer within %v", d.cfg.Timeout)
		return o
	case err != nil:
		o.Result, o.Error = holdfast.WebhookFailed, connError(err)
		return o
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, d.cfg.ResponseLimit)) // lets the connection be reused; no more is read
	o.StatusCode = resp.StatusCode
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		o.Result = holdfast.WebhookSucceeded
	} else {
		o.Result, o.Error = holdfast.WebhookFailed, "the endpoint answered "+strconv.Itoa(resp.StatusCode)
	}
	return o
}

// signer opens the endpoint's secrets: its current one, and its previous
// one while the rotation's overlap lasts.
func (d *Dispatcher) signer(dl *Delivery, now time.Time) (*Signer, error) {
	cur, err := d.cfg.Cipher.Open(dl.Secret, dl.EndpointID)
	if err != nil {
		return nil, err
	}
	secrets := []string{string(cur)}
	if dl.Previous != nil && dl.PreviousUntil != nil && now.Before(*dl.PreviousUntil) {
		prev, err := d.cfg.Cipher.Open(dl.Previous, dl.EndpointID)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, string(prev))
	}
	return NewSigner(secrets...)
}

// connError describes a failed request without the URL (which the
// tenant knows) or anything of this host.
func connError(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &oe) && oe.Op == "dial":
		return "could not connect to the endpoint"
	case errors.As(err, &ne) && ne.Timeout():
		return "the connection timed out"
	}
	return "the request failed before an answer"
}

// Lease returns how long a delivery stays leased to the replica attempting it.
func (d *Dispatcher) Lease() time.Duration { return d.cfg.Lease }
