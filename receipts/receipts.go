// Package receipts is the receipt pipeline: uploads are checked, stored in
// the blob store and queued (receipt row and job in one transaction, the
// job relayed to the JetStream work-queue stream "jobs" by the outbox), and
// workers in every replica process them: decode, resize, watermark, store
// the variants, mark the receipt ready.
//
// However many replicas and however deep the queue, at most Cap jobs are
// in flight: the workers share one durable consumer whose MaxAckPending is
// the cap (Lambda's reserved concurrency). A job's visibility timeout is
// the consumer's AckWait, extended by heartbeats while a worker works, so
// only a dead worker's job is delivered again. Failures are retried with
// exponential backoff and jitter; after MaxDeliveries the job goes to the
// dead-letter stream "jobs-dead" and its receipt is marked failed, until an
// operator redrives it. An image that cannot be decoded would fail every
// retry the same way: its job goes to the dead-letter stream at its first
// failure, terminated rather than acknowledged.
package receipts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
)

// NATS names of the pipeline's own, unless configured: the dead-letter
// stream and the workers' durable consumer on the jobs stream
// (holdfast.JobsStream).
const (
	DefaultDeadStream = "jobs-dead"
	DefaultConsumer   = "receipts"
)

// Config configures the pipeline's streams and workers.
type Config struct {
	// Stream is the work-queue stream of jobs. Default holdfast.JobsStream.
	Stream string
	// Subject of receipt jobs. Default holdfast.ReceiptJobsSubject.
	Subject string
	// DeadStream receives jobs that failed MaxDeliveries times. Default
	// DefaultDeadStream.
	DeadStream string
	// Consumer is the workers' durable consumer. Default DefaultConsumer.
	Consumer string
	// Cap is the most jobs in flight across every replica (the consumer's
	// MaxAckPending). Default 50.
	Cap int
	// Workers is how many jobs this replica works on at once. Default Cap.
	Workers int
	// AckWait is the visibility timeout: a job not acknowledged, and not
	// extended by a heartbeat, for this long is delivered again. Default 60s.
	AckWait time.Duration
	// MaxDeliveries is how many times a job is tried before it is
	// dead-lettered; a job whose image cannot be decoded is tried once.
	// Default 5.
	MaxDeliveries int
	// BackoffBase is the retry delay after the first failure; it doubles
	// with each delivery, with jitter, up to BackoffMax. Default 1s.
	BackoffBase time.Duration
	// BackoffMax caps the retry delay. Default 5m.
	BackoffMax time.Duration
	// MaxJobs caps the jobs stream (discard new). Default 1,000,000.
	MaxJobs int64
	// Replicas of the streams and of the workers' consumer in a cluster;
	// existing ones with another count are scaled to it. Default 1.
	Replicas int
	// Memory keeps the streams in memory (tests). Default false.
	Memory bool
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Stream == "" {
		c.Stream = holdfast.JobsStream
	}
	if c.Subject == "" {
		c.Subject = holdfast.ReceiptJobsSubject
	}
	if c.DeadStream == "" {
		c.DeadStream = DefaultDeadStream
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.Cap == 0 {
		c.Cap = 50
	}
	if c.Workers == 0 {
		c.Workers = c.Cap
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = 1_000_000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

func (c Config) validate() error {
	if c.Cap < 1 || c.Workers < 1 || c.AckWait < time.Second || c.MaxDeliveries < 1 || c.BackoffBase <= 0 ||
		c.BackoffMax < c.BackoffBase || c.MaxJobs < 1 || c.Replicas < 1 {
		return errors.New("receipts: Cap, Workers, MaxDeliveries, BackoffBase, MaxJobs and Replicas must be positive, AckWait at least 1s, BackoffMax at least BackoffBase")
	}
	return nil
}

// EnsureStreams creates or updates the jobs and dead-letter streams and the
// workers' consumer. Safe to call from every replica at every start.
func EnsureStreams(ctx context.Context, js njs.JetStream, cfg Config) (njs.Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	storage := njs.FileStorage
	if cfg.Memory {
		storage = njs.MemoryStorage
	}
	if _, err := js.CreateOrUpdateStream(ctx, njs.StreamConfig{
		Name: cfg.Stream, Description: "Holdfast's jobs: each is consumed once, then deleted",
		Subjects: []string{cfg.Stream + ".>"}, Retention: njs.WorkQueuePolicy, Discard: njs.DiscardNew,
		MaxMsgs: cfg.MaxJobs, Storage: storage, Duplicates: 10 * time.Minute, Replicas: cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("receipts: stream %s: %w", cfg.Stream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, njs.StreamConfig{
		Name: cfg.DeadStream, Description: "Holdfast's jobs that failed every delivery",
		Subjects: []string{cfg.DeadStream + ".>"}, Retention: njs.LimitsPolicy, Storage: storage, MaxAge: 30 * 24 * time.Hour,
		Replicas: cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("receipts: stream %s: %w", cfg.DeadStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, njs.ConsumerConfig{
		Durable: cfg.Consumer, Description: "Holdfast receipt workers, in every replica",
		FilterSubject: cfg.Subject, AckPolicy: njs.AckExplicitPolicy, AckWait: cfg.AckWait,
		MaxAckPending: cfg.Cap, // the global cap: the server delivers no more than this unacknowledged
		MaxDeliver:    -1,      // the workers count deliveries and dead-letter themselves
		MaxWaiting:    512,
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("receipts: consumer %s: %w", cfg.Consumer, err)
	}
	return cons, nil
}

// Backoff returns the delay before delivery n+1 of a job that failed its
// n-th delivery: exponential (BackoffBase × 2^(n-1), capped at BackoffMax)
// with "equal jitter": half fixed, half random. The fixed half means a
// retry never comes at once and each gap is at least as long as the
// previous gap could have been; the random half keeps jobs that failed
// together from retrying together. (Full jitter, uniform in [0, e), could
// retry immediately.)
func Backoff(cfg Config, n int, r *rand.Rand) time.Duration {
	cfg = cfg.WithDefaults()
	e := cfg.BackoffBase
	for i := 1; i < n && e < cfg.BackoffMax; i++ {
		e *= 2
	}
	e = min(e, cfg.BackoffMax)
	half := e / 2
	var jitter time.Duration
	if r != nil {
		jitter = time.Duration(r.Int64N(int64(half) + 1))
	} else {
		jitter = rand.N(half + 1)
	}
	return half + jitter
}
