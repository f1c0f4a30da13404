package main

import "context"

// Hooks for the external tests of this package.

// BatchStats is batchStats, the benchmark's per-run summary line.
var BatchStats = batchStats

// DrainEvents is drainEvents: it waits until the outbox is empty and every
// consumer group has caught up.
func (m *Main) DrainEvents(ctx context.Context) error { return m.drainEvents(ctx) }

// RunAdoptStream is runAdoptStream, the adopt-stream command.
var RunAdoptStream = runAdoptStream
