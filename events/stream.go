// Package events is Holdfast's event log on NATS JetStream: the relay that
// moves the transactional outbox into the stream, the publisher of client
// events, and the consumer groups (analytics, audit) that read the stream
// at their own pace, exactly once, with their lag in view and a pause that
// works on any server version.
//
// Producers never wait for consumers: the stream sits between them. When
// consumers fall behind, lag grows and is reported; when the stream itself
// is full, publishing is refused loudly (discard-new), never dropped.
package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
)

// DefaultStream is the name of the events stream unless configured.
const DefaultStream = "events"

// StreamConfig configures the events stream.
type StreamConfig struct {
	// Name of the stream. Default DefaultStream; its subjects are "<name>.>".
	Name string
	// MaxBytes caps the stream's size; past it, publishes are refused. Default 1 GiB.
	MaxBytes int64
	// MaxAge is how long events are kept. Default 7 days.
	MaxAge time.Duration
	// Duplicates is the window in which a message id is stored once. The
	// relay republishes after a crash within seconds, so the default 10
	// minutes is ample; a larger window costs the server memory. Default 10m.
	Duplicates time.Duration
	// Replicas of the stream in a cluster, and of the consumer groups'
	// durable consumers; an existing stream with another count is scaled
	// to it. Default 1.
	Replicas int
	// Memory keeps the stream in memory instead of files (tests, benchmarks). Default false.
	Memory bool
}

// WithDefaults returns c with zero fields set to their defaults.
func (c StreamConfig) WithDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = DefaultStream
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.Duplicates == 0 {
		c.Duplicates = 10 * time.Minute
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

func (c StreamConfig) validate() error {
	if c.MaxBytes < 1<<20 || c.MaxAge <= 0 || c.Duplicates <= 0 || c.Replicas < 1 {
		return errors.New("events: MaxBytes must be at least 1 MiB; MaxAge, Duplicates and Replicas positive")
	}
	return nil
}

// Subject returns the subject of an event: <stream>.<tenant>.<type>.
func (c StreamConfig) Subject(tenantID, typ string) string {
	return c.Name + "." + tenantID + "." + typ
}

// EnsureStream creates the stream, or updates it to cfg, and returns it.
// A stream it creates gets a new id in its metadata (MetadataStreamID),
// which an update keeps: the stream's identity (StreamIdentity). Safe to
// call from every replica at every start; it does not check the stream
// against the database (see Guard.Ensure).
func EnsureStream(ctx context.Context, js njs.JetStream, cfg StreamConfig) (njs.Stream, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	storage := njs.FileStorage
	if cfg.Memory {
		storage = njs.MemoryStorage
	}
	sc := njs.StreamConfig{
		Name:        cfg.Name,
		Description: "Holdfast's event log: ledger events from the outbox and client events",
		Subjects:    []string{cfg.Name + ".>"},
		Retention:   njs.LimitsPolicy,
		MaxBytes:    cfg.MaxBytes,
		MaxAge:      cfg.MaxAge,
		Discard:     njs.DiscardNew, // overflow is refused, loudly; nothing old is dropped to make room
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
	}
	for attempt := 0; ; attempt++ {
		existing, err := js.Stream(ctx, cfg.Name)
		switch {
		case err == nil:
			// A stream without an id keeps none: its identity is its creation time.
			sc.Metadata = nil
			if id := existing.CachedInfo().Config.Metadata[MetadataStreamID]; id != "" {
				sc.Metadata = map[string]string{MetadataStreamID: id}
			}
			s, err := js.UpdateStream(ctx, sc)
			if err != nil {
				return nil, fmt.Errorf("events: stream %s: %w", cfg.Name, err)
			}
			return s, nil
		case errors.Is(err, njs.ErrStreamNotFound):
			sc.Metadata = map[string]string{MetadataStreamID: uuid.NewString()}
			s, err := js.CreateStream(ctx, sc)
			if errors.Is(err, njs.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another replica created it meanwhile: update that one
			}
			if err != nil {
				return nil, fmt.Errorf("events: stream %s: %w", cfg.Name, err)
			}
			return s, nil
		default:
			return nil, fmt.Errorf("events: stream %s: %w", cfg.Name, err)
		}
	}
}

// BatchHeader marks a stream message that holds several events: the
// events of one tenant and type that a group-commit batch wrote, their
// envelopes one a line (each compact JSON, so without a newline). Its
// value is their number. A message without it holds one envelope as is.
const BatchHeader = "Holdfast-Batch"

// ParseDelivery reads a delivered message: its stream sequence and its
// events' envelopes.
func ParseDelivery(m njs.Msg) ([]holdfast.EventDelivery, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("events: message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	lines := [][]byte{m.Data()}
	if h := m.Headers().Get(BatchHeader); h != "" {
		lines = bytes.Split(m.Data(), []byte{'\n'})
		if n, err := strconv.Atoi(h); err != nil || n != len(lines) {
			return nil, fmt.Errorf("events: message %d: %s %q, but %d lines", seq, BatchHeader, h, len(lines))
		}
	}
	out := make([]holdfast.EventDelivery, len(lines))
	for i, line := range lines {
		out[i] = holdfast.EventDelivery{Seq: seq, Index: i, Raw: line}
		if err := unmarshalEvent(line, &out[i].Event); err != nil {
			return nil, fmt.Errorf("events: message %d, event %d: %w", seq, i, err)
		}
	}
	return out, nil
}
