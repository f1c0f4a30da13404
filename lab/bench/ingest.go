package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/holdfast/holdfast/lab/load"
)

// ingestResult compares ingest through the API with raw JetStream publishing.
type ingestResult struct {
	Batch, Clients   int
	Holdfast, Raw    float64 // events per second
	HoldfastRefused  int64   // batches answered with anything but 202
	Ratio            float64 // Holdfast / Raw
	HoldfastDuration time.Duration
}

// runIngest measures events per second stored through POST /v1/events
// (clients concurrent batches of batch events, for d) and, as the limit,
// publishing the same envelopes straight to a JetStream stream of the same
// storage in-process (clients concurrent publishers, each sending batch
// messages asynchronously and waiting for their acks, as the API does).
// The consumer groups are paused meanwhile, so neither side competes with them.
func runIngest(ctx context.Context, t *EventTarget, js njs.JetStream, rawStream string, clients, batch int, d time.Duration) (ingestResult, error) {
	res := ingestResult{Batch: batch, Clients: clients}
	if t.Pause != nil {
		if err := t.Pause(ctx); err != nil {
			return res, err
		}
		defer t.Resume(context.WithoutCancel(ctx))
	}
	body := eventBody(batch)
	var accepted, refused atomic.Int64
	r := load.ClosedLoop(ctx, "ingest", clients, d, func(ctx context.Context, _ int, _ int64) (bool, error) {
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

// rawEnvelope is an envelope like the ones Holdfast builds for eventBody's events.
func rawEnvelope() []byte {
	return []byte(`{"id":"` + uuid.NewString() + `","type":"payment.attempted","version":1,"source":"client","tenant":"` + uuid.NewString() +
		`","occurred_at":"2026-11-28T10:00:00.123456Z","data":{"amount":100,"currency":"EUR","method":"card","card_brand":"visa","session":"s-000001"}}`)
}

// printIngest writes an ingest comparison.
func printIngest(w io.Writer, r ingestResult) {
	fmt.Fprintf(w, "%-40s %14s\n", "ingest (batches of "+fmt.Sprint(r.Batch)+", "+fmt.Sprint(r.Clients)+" clients)", "events/s")
	fmt.Fprintf(w, "%-40s %14.0f\n", "Holdfast POST /v1/events", r.Holdfast)
	fmt.Fprintf(w, "%-40s %14.0f\n", "raw JetStream async publish (limit)", r.Raw)
	fmt.Fprintf(w, "%-40s %14.2f×\n", "Holdfast / raw", r.Ratio)
	if r.HoldfastRefused > 0 {
		fmt.Fprintf(w, "%-40s %14d\n", "batches refused (503)", r.HoldfastRefused)
	}
}
