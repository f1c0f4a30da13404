package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// Set-up's pacing: each attempt of a step is bounded, and a failed one is
// tried again after a jittered backoff that doubles up to setupMaxBackoff
// (docs/decisions/0074-nats-setup-retries.md).
const (
	setupAttempt    = 5 * time.Second
	setupMinBackoff = 250 * time.Millisecond
	setupMaxBackoff = 10 * time.Second
)

// natsSetup creates the streams and durable consumers in order, then starts
// what consumes them. A step that fails for want of an answer (a node down,
// a meta-leader election) does not stop the replica from starting: the
// steps left are retried in the background until they succeed, while the
// ledger serves and the outbox holds the events. A stream that is not the
// one the database is bound to stops the start, as it always did.
type natsSetup struct {
	logger *slog.Logger
	steps  []setupStep
	run    lifecycle.Runner
	done   atomic.Bool
}

// A setupStep is idempotent: ensure creates or updates something on the
// server, within ctx (one attempt's); start, once ensure succeeded, runs
// what uses it under run, the replica's context (nil: nothing to start).
type setupStep struct {
	name   string
	ensure func(ctx context.Context) error
	start  func(run context.Context) error
}

// add appends a step; steps run in the order they were added.
func (s *natsSetup) add(name string, ensure, start func(context.Context) error) {
	s.steps = append(s.steps, setupStep{name: name, ensure: ensure, start: start})
}

// Start tries each step once, in order. It returns the error of a step
// that found a stream not bound to the database, or that could not start
// what it ensured; on any other failure it logs it and goes on with the
// steps left in the background, and returns nil.
func (s *natsSetup) Start(ctx context.Context, registry prometheus.Registerer) error {
	if registry != nil {
		registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "holdfast_nats_setup_done",
			Help: "1 once this replica's streams and consumers are set up, 0 while their set-up is retried (events wait in the outbox)."},
			func() float64 {
				if s.done.Load() {
					return 1
				}
				return 0
			}))
	}
	run := s.run.Start(ctx)
	for i, step := range s.steps {
		err := s.try(run, step)
		if errors.Is(err, events.ErrStreamNotBound) || errors.Is(err, errSetupStart) {
			return err
		}
		if err != nil {
			s.logger.Warn("NATS set-up incomplete: the ledger serves, events wait in the outbox; retrying in the background",
				"step", step.name, "err", err)
			left := s.steps[i:]
			s.run.Go(func() { s.retry(run, left) })
			return nil
		}
	}
	s.done.Store(true)
	return nil
}

// Stop ends the retries; a step in hand finishes first. Idempotent; safe
// before Start.
func (s *natsSetup) Stop() { s.run.Stop() }

// Done reports whether every step succeeded.
func (s *natsSetup) Done() bool { return s.done.Load() }

var errSetupStart = errors.New("NATS set-up")

// try runs one attempt of a step.
func (s *natsSetup) try(run context.Context, step setupStep) error {
	ctx, cancel := context.WithTimeout(run, setupAttempt)
	err := step.ensure(ctx)
	cancel()
	if err != nil {
		return err
	}
	if step.start != nil {
		if err := step.start(run); err != nil {
			return fmt.Errorf("%w: start %s: %w", errSetupStart, step.name, err)
		}
	}
	return nil
}

// retry runs the steps in order, each until it succeeds or run ends.
func (s *natsSetup) retry(run context.Context, steps []setupStep) {
	backoff := setupMinBackoff
	for i := 0; i < len(steps) && run.Err() == nil; {
		// Equal jitter: never at once, and replicas that failed together
		// do not retry together.
		if !lifecycle.Sleep(run, backoff/2+rand.N(backoff/2+1)) {
			return
		}
		err := s.try(run, steps[i])
		switch {
		case err == nil:
			s.logger.Info("NATS set-up step done", "step", steps[i].name)
			i, backoff = i+1, setupMinBackoff
			continue
		case errors.Is(err, events.ErrStreamNotBound) || errors.Is(err, errSetupStart):
			// An operator's action is needed (see the error); keep asking, slowly.
			s.logger.Error("NATS set-up", "step", steps[i].name, "err", err)
			backoff = setupMaxBackoff
		case run.Err() == nil:
			backoff = min(2*backoff, setupMaxBackoff)
			s.logger.Warn("NATS set-up retry", "step", steps[i].name, "err", err, "retry_in", backoff)
		}
	}
	if run.Err() == nil {
		s.done.Store(true)
		s.logger.Info("NATS set-up complete")
	}
}

// natsReplicas returns the copies of every stream and durable consumer:
// --nats-replicas, or, at 0, 3 when the NATS server is in a cluster and 1
// otherwise (docs/decisions/0073-nats-replicas.md).
func (m *Main) natsReplicas() (int, error) {
	n := m.Config.NATSReplicas
	switch {
	case n < 0 || n > 5:
		return 0, fmt.Errorf("--nats-replicas %d: JetStream keeps 1 to 5 copies (0: automatic)", n)
	case m.NATS.Embedded() && n > 1:
		return 0, fmt.Errorf("--nats-replicas %d needs a NATS cluster (--nats-url): the embedded server is a single node", n)
	case n == 0 && m.NATS.Clustered():
		return 3, nil
	case n == 0:
		return 1, nil
	case n > 1 && !m.NATS.Clustered():
		return 0, fmt.Errorf("--nats-replicas %d: the NATS server at --nats-url is not in a cluster, which keeps one copy only", n)
	}
	return n, nil
}

// startNATSSetup runs the set-up steps that openEventLog and openReceipts
// added (see natsSetup.Start).
func (m *Main) startNATSSetup(ctx context.Context) error {
	if n, known := m.events.stream.Replicas, m.NATS.Servers(); !m.NATS.Embedded() && n > known {
		m.Logger.Warn("--nats-replicas is more than the NATS servers known: streams cannot be created until the cluster has that many",
			"replicas", n, "servers_known", known)
	}
	return m.events.setup.Start(ctx, m.Registry)
}

// stopNATSSetup ends the set-up's retries, before what they would start is
// stopped.
func (m *Main) stopNATSSetup() {
	if m.events != nil && m.events.setup != nil {
		m.events.setup.Stop()
	}
}
