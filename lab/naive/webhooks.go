package naive

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/events"
)

// WebhookPool is the naive way to deliver webhooks: one shared pool of
// workers takes the events in the order they come, posts each to its
// tenant's endpoint and waits for the answer; a failure goes to the back
// of the queue after its retry delay. No cap per endpoint, no breaker: an
// endpoint that never answers holds a worker for the whole timeout, every
// time.
type WebhookPool struct {
	Workers  int
	Timeout  time.Duration
	Schedule []time.Duration   // delays before each attempt, as Holdfast's
	URLs     map[string]string // tenant id → endpoint URL

	queue  chan webhookJob
	client *http.Client
	wg     sync.WaitGroup
}

type webhookJob struct {
	id, url string
	body    []byte
	attempt int
}

// Run consumes the stream from now on (its own durable consumer, name)
// and delivers until ctx ends. Events are acknowledged once queued in
// memory: a crash loses the queue.
func (p *WebhookPool) Run(ctx context.Context, js njs.JetStream, stream, name string) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, njs.ConsumerConfig{Durable: name, DeliverPolicy: njs.DeliverNewPolicy,
		AckPolicy: njs.AckExplicitPolicy, MaxAckPending: 10_000})
	if err != nil {
		return err
	}
	p.queue = make(chan webhookJob, 1<<20)
	p.client = &http.Client{Timeout: p.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: p.Workers}}
	for range p.Workers {
		p.wg.Go(func() { p.work(ctx) })
	}
	defer p.wg.Wait()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(200, njs.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			ds, err := events.ParseDelivery(m)
			if err == nil {
				for _, d := range ds {
					if url, ok := p.URLs[d.Event.TenantID]; ok {
						body, _ := json.Marshal(d.Event)
						p.queue <- webhookJob{id: d.Event.ID, url: url, body: body, attempt: 1}
					}
				}
			}
			m.Ack()
		}
	}
	return js.DeleteConsumer(context.WithoutCancel(ctx), stream, name)
}

func (p *WebhookPool) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-p.queue:
			if p.post(ctx, j) || j.attempt >= len(p.Schedule) {
				continue
			}
			j.attempt++
			time.AfterFunc(p.Schedule[j.attempt-1], func() {
				select {
				case p.queue <- j:
				default:
				}
			})
		}
	}
}

func (p *WebhookPool) post(ctx context.Context, j webhookJob) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", j.id)
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
