package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

// WebhooksOptions are the settings of `holdfast-lab bench webhooks`; its
// flags give their defaults.
type WebhooksOptions struct {
	DatabaseURL string        // server to create the database on; empty: a private cluster
	Endpoints   int           // endpoints, one per tenant; the first three misbehave in the "bad" runs
	Rate        float64       // transfers per second, spread over the tenants
	Duration    time.Duration // of each run's load
	Drain       time.Duration // after the load, the longest wait for the healthy endpoints to get every event
	Warmup      time.Duration // transfers at the rate before the first run, not measured
	Timeout     time.Duration // an attempt's timeout, Holdfast's and the naive pool's
	Slow        time.Duration // how long the slow endpoint takes
	Workers     int           // the naive pool's workers
}

// WebhookRun is one run of the webhooks benchmark.
type WebhookRun struct {
	Name      string
	Holdfast  bool // Holdfast's dispatcher delivers (else the naive pool, or nothing)
	Naive     bool
	Bad       bool // the three bad endpoints misbehave
	Transfers load.OverloadResult
	Classes   []webhookClassStats
}

// Healthy returns the healthy class's figures.
func (r WebhookRun) Healthy() webhookClassStats {
	for _, c := range r.Classes {
		if c.Class == classHealthy {
			return c
		}
	}
	return webhookClassStats{}
}

// webhookBench is the running benchmark: a server, its tenants, their
// endpoints on one receiver.
type webhookBench struct {
	o       WebhooksOptions
	env     *benchEnv
	recv    *webhookReceiver
	url     string
	keys    []string
	from    []string
	to      []string
	tenants map[string]string // tenant id → endpoint URL, for the naive pool
	sent    []atomic.Int64    // 201s per endpoint in the current run
	poster  *load.Poster
	stop    func() error // the receiver's server
	runs    int          // runs so far: each one's Idempotency-Keys are its own
}

// Webhooks runs the webhooks benchmark: transfers at a steady rate while
// every event goes to its tenant's endpoint, first with no delivery, then
// through Holdfast with every endpoint healthy and with three bad ones,
// then through the naive shared pool the same two ways. It prints per
// endpoint class the events delivered, duplicates and delivery latency,
// and the transfers' latency in each run.
func Webhooks(ctx context.Context, o WebhooksOptions, stdout, stderr io.Writer) error {
	runs, machineLine, err := RunWebhooks(ctx, o, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "holdfast-lab bench webhooks — %s\n", machineLine)
	PrintWebhooks(stdout, o, runs)
	return nil
}

// RunWebhooks runs the benchmark's five runs and returns them, with a line
// that describes the machine.
func RunWebhooks(ctx context.Context, o WebhooksOptions, stderr io.Writer) ([]WebhookRun, string, error) {
	b, err := startWebhookBench(ctx, o, stderr)
	if err != nil {
		return nil, "", err
	}
	defer b.close()
	runs := []WebhookRun{
		{Name: "transfers alone"},
		{Name: "Holdfast, all healthy", Holdfast: true},
		{Name: "Holdfast, 3 bad endpoints", Holdfast: true, Bad: true},
		{Name: "naive pool, all healthy", Naive: true},
		{Name: "naive pool, 3 bad endpoints", Naive: true, Bad: true},
	}
	if o.Warmup > 0 {
		fmt.Fprintf(stderr, "warm-up: %s\n", o.Warmup)
		warm := &WebhookRun{Name: "warm-up"}
		if err := b.run(ctx, warm, o.Warmup); err != nil {
			return nil, "", err
		}
	}
	for i := range runs {
		fmt.Fprintf(stderr, "run %d/%d: %s\n", i+1, len(runs), runs[i].Name)
		if err := b.run(ctx, &runs[i], o.Duration); err != nil {
			return nil, "", err
		}
	}
	return runs, machine(ctx, b.env.main.DB.Pool), nil
}

func startWebhookBench(ctx context.Context, o WebhooksOptions, stderr io.Writer) (*webhookBench, error) {
	key := webhooks.NewKey()
	env, err := startBenchEnv(ctx, o.DatabaseURL, 16, stderr, func(c *app.Config) {
		c.Webhooks.SecretKey, c.Webhooks.AllowPrivate, c.Webhooks.Timeout = key, true, o.Timeout
	})
	if err != nil {
		return nil, err
	}
	b := &webhookBench{o: o, env: env, recv: newWebhookReceiver(o.Slow), tenants: map[string]string{},
		sent: make([]atomic.Int64, o.Endpoints)}
	if b.url, b.stop, err = ServeLoopback(b.recv); err != nil {
		env.close()
		return nil, err
	}
	if err := b.setup(ctx, key); err != nil {
		b.close()
		return nil, err
	}
	if b.poster, err = load.NewPoster(env.main.HTTP.URL(), 64, 10*time.Second); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// setup creates a tenant per endpoint, with two accounts and the endpoint.
func (b *webhookBench) setup(ctx context.Context, key string) error {
	k, err := webhooks.ParseKey(key)
	if err != nil {
		return err
	}
	cipher, err := webhooks.NewCipher(k)
	if err != nil {
		return err
	}
	m := b.env.main
	tenants, accounts, hooks := postgres.NewTenantService(m.DB), postgres.NewAccountService(m.DB), postgres.NewWebhookService(m.DB, cipher)
	for i := range b.o.Endpoints {
		t, ak, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "webhooks-" + strconv.Itoa(i)}, nil)
		if err != nil {
			return err
		}
		from, err := accounts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true}, nil)
		if err != nil {
			return err
		}
		to, err := accounts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD"}, nil)
		if err != nil {
			return err
		}
		url := b.url + "/ep/" + strconv.Itoa(i)
		if _, err := hooks.CreateWebhookEndpoint(ctx, t.ID, holdfast.WebhookEndpointCreate{URL: url,
			EventTypes: []string{holdfast.EventTransferPosted}}, nil); err != nil {
			return err
		}
		b.keys, b.from, b.to = append(b.keys, ak.Secret), append(b.from, from.ID), append(b.to, to.ID)
		b.tenants[t.ID] = url
	}
	return nil
}

func (b *webhookBench) close() {
	b.env.close()
	b.stop()
}

// send posts the seq-th transfer, for the tenant seq picks in turn.
func (b *webhookBench) send(run int) load.Send {
	return func(ctx context.Context, seq int64) (int, error) {
		i := int(seq % int64(len(b.keys)))
		header := fmt.Appendf(nil, "Content-Type: application/json\r\nAuthorization: Bearer %s\r\nIdempotency-Key: webhooks-%d-%d\r\n", b.keys[i], run, seq)
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":1,"currency":"USD"}`, b.from[i], b.to[i])
		status, err := b.poster.Post(ctx, "/v1/transfers", header, body)
		if status == 201 {
			b.sent[i].Add(1)
		}
		return status, err
	}
}

// run runs one configuration: the load, then the drain, then the counts.
func (b *webhookBench) run(ctx context.Context, r *WebhookRun, d time.Duration) error {
	m := b.env.main
	if _, err := m.DB.Pool.Exec(ctx, "UPDATE webhook_endpoints SET enabled = $1, consecutive_failures = 0, failing_since = NULL, open_until = NULL", r.Holdfast); err != nil {
		return err
	}
	b.recv.bad.Store(r.Bad)
	for i := range b.sent {
		b.sent[i].Store(0)
	}
	pctx, stopPool := context.WithCancel(ctx)
	poolDone := make(chan error, 1)
	if r.Naive {
		pool := &naive.WebhookPool{Workers: b.o.Workers, Timeout: b.o.Timeout, Schedule: webhooks.DefaultSchedule, URLs: b.tenants}
		go func() { poolDone <- pool.Run(pctx, m.NATS.JS, m.EventStream().Name, "naive_webhooks") }()
	} else {
		poolDone <- nil
	}
	start := time.Now()
	b.runs++
	r.Transfers = load.RunOverload(ctx, r.Name, b.o.Rate, d, 4096, time.Second, m.HTTP.URL()+"/healthz", b.send(b.runs))
	end := time.Now()
	classOf := func(i int) string {
		if !r.Bad || i > 2 {
			return classHealthy
		}
		return webhookClasses[1+i]
	}
	sent := make([]int64, len(b.sent))
	var healthy int64
	for i := range b.sent {
		sent[i] = b.sent[i].Load()
		if classOf(i) == classHealthy {
			healthy += sent[i]
		}
	}
	if r.Holdfast || r.Naive {
		for deadline := time.Now().Add(b.o.Drain); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if int64(b.recv.healthyDelivered(start, end, classOf)) >= healthy {
				break
			}
		}
	}
	stopPool()
	if err := <-poolDone; err != nil && ctx.Err() == nil {
		return err
	}
	r.Classes = b.recv.stats(start, end, sent, classOf)
	return nil
}
