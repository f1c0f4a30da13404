package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast"
)

// MetadataStreamID is the key, in a stream's metadata, of the id
// EnsureStream gives a stream it creates.
const MetadataStreamID = "holdfast_stream_id"

// StreamIdentity returns what tells a stream from another of the same name:
// the id in its metadata, or, for a stream without one (created by a server
// that keeps no metadata, before 2.10, or before Holdfast set one), its
// creation time. A stream deleted and created again, or the same name on
// another server, has another identity; its sequences start from 1 again.
func StreamIdentity(info *njs.StreamInfo) string {
	if id := info.Config.Metadata[MetadataStreamID]; id != "" {
		return "id:" + id
	}
	return "created:" + info.Created.UTC().Format(time.RFC3339Nano)
}

// Bindings is the database's record of the streams the event log is bound
// to (postgres.ConsumerStore).
type Bindings interface {
	// StreamBinding returns the identity recorded for the stream, and
	// since when; "" if none is.
	StreamBinding(ctx context.Context, name string) (identity string, boundAt time.Time, err error)
	// BindStream records identity as the stream's unless one is recorded,
	// and returns the one recorded.
	BindStream(ctx context.Context, name, identity string) (recorded string, boundAt time.Time, err error)
}

// ErrStreamNotBound is wrapped by every refusal to use a stream that is not
// the one the database is bound to.
var ErrStreamNotBound = errors.New("not the stream this database's event log is bound to")

// StreamMismatchError says that a stream, or a consumer group's progress,
// belongs to another stream than the one on this NATS server.
type StreamMismatchError struct {
	Stream      string    // the stream's name
	Group       string    // the consumer group whose progress is recorded elsewhere; "" for the stream's binding
	BoundStream string    // the stream the group's progress is recorded in, when it is not Stream
	Bound       string    // the identity recorded in the database
	BoundAt     time.Time // when it was recorded; zero for a group
	Found       string    // the identity of the stream on this NATS server; "" when it has none
}

func (e *StreamMismatchError) Error() string {
	found := "does not exist on this NATS server"
	if e.Found != "" {
		found = fmt.Sprintf("on this NATS server has identity %s", e.Found)
	}
	what := fmt.Sprintf("this database's event log is bound to the stream %q with identity %s (since %s)",
		e.Stream, e.Bound, e.BoundAt.UTC().Format(time.RFC3339))
	if e.Group != "" {
		bound := e.BoundStream
		if bound == "" {
			bound = e.Stream
		}
		what = fmt.Sprintf("consumer group %s counts its progress in the stream %q with identity %s", e.Group, bound, e.Bound)
	}
	return fmt.Sprintf("events: stream %q %s, but %s. Progress is counted in stream sequences, and a stream that replaced "+
		"the recorded one (another replica's embedded NATS, another NATS server, a lost data directory) numbers its messages "+
		"from 1 again: its events would be skipped as applied. Point every replica at the original NATS with --nats-url "+
		"(a replica without --nats-url runs a private embedded NATS); or, knowingly, run 'holdfast adopt-stream' with this "+
		"replica's --nats-url or --data-dir: it records the stream on this server as the event log's and resets the consumer "+
		"groups' progress in it (events of the old stream not yet consumed are lost)", e.Stream, found, what)
}

func (e *StreamMismatchError) Unwrap() error { return ErrStreamNotBound }

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Recheck is how long a stream, once checked, is trusted before a
	// publish or an apply checks it again. Default 1s.
	Recheck time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c GuardConfig) WithDefaults() GuardConfig {
	if c.Recheck == 0 {
		c.Recheck = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Guard checks that the streams the event log publishes into and consumes
// are the ones the database is bound to, binding a stream the database has
// none recorded for. The relay, the publisher and the consumer groups of a
// replica share one.
type Guard struct {
	cfg      GuardConfig
	js       njs.JetStream
	bindings Bindings

	mu      sync.Mutex
	checked map[string]checkedStream
}

type checkedStream struct {
	identity   string
	at         time.Time
	refreshing bool // a Check is asking the server and the database again
}

// NewGuard returns a guard of the streams on js against bindings.
func NewGuard(js njs.JetStream, bindings Bindings, cfg GuardConfig) (*Guard, error) {
	cfg = cfg.WithDefaults()
	if cfg.Recheck <= 0 {
		return nil, errors.New("events: guard Recheck must be positive")
	}
	return &Guard{cfg: cfg, js: js, bindings: bindings, checked: map[string]checkedStream{}}, nil
}

// Check returns the identity of the stream name on the server, having
// checked, at most Recheck ago, that it is the stream the database is bound
// to; it binds the stream when the database has none recorded. It returns a
// *StreamMismatchError when the stream is another (or is missing while one
// is recorded), and the server's error when it cannot tell.
func (g *Guard) Check(ctx context.Context, name string) (string, error) {
	now := g.cfg.Now()
	g.mu.Lock()
	c, ok := g.checked[name]
	// One caller asks again; the others go on with the identity checked
	// last until it has the answer, rather than all asking at once.
	if ok && (now.Sub(c.at) < g.cfg.Recheck || c.refreshing) {
		g.mu.Unlock()
		return c.identity, nil
	}
	if ok {
		c.refreshing = true
		g.checked[name] = c
	}
	g.mu.Unlock()
	identity, err := g.check(ctx, name)
	if err != nil {
		g.forget(name)
		return "", err
	}
	g.mu.Lock()
	g.checked[name] = checkedStream{identity: identity, at: now}
	g.mu.Unlock()
	return identity, nil
}

func (g *Guard) forget(name string) {
	g.mu.Lock()
	delete(g.checked, name)
	g.mu.Unlock()
}

// check compares the stream on the server with the database's record.
func (g *Guard) check(ctx context.Context, name string) (string, error) {
	s, err := g.js.Stream(ctx, name)
	if errors.Is(err, njs.ErrStreamNotFound) {
		bound, at, berr := g.bindings.StreamBinding(ctx, name)
		if berr != nil {
			return "", berr
		}
		if bound != "" {
			return "", &StreamMismatchError{Stream: name, Bound: bound, BoundAt: at}
		}
		return "", fmt.Errorf("events: stream %s: %w", name, err)
	}
	if err != nil {
		return "", fmt.Errorf("events: stream %s: %w", name, err)
	}
	identity := StreamIdentity(s.CachedInfo())
	bound, at, err := g.bindings.BindStream(ctx, name, identity)
	if err != nil {
		return "", err
	}
	if bound != identity {
		return "", &StreamMismatchError{Stream: name, Bound: bound, BoundAt: at, Found: identity}
	}
	return identity, nil
}

// Ensure runs create, which creates the stream name or updates its
// configuration, and returns the stream's identity, checked as Check does;
// but before it creates a stream where there is none, it checks that the
// database is bound to none: a missing stream that the database recorded
// is a *StreamMismatchError, not something to create anew.
func (g *Guard) Ensure(ctx context.Context, name string, create func(context.Context) error) (string, error) {
	g.forget(name)
	_, err := g.js.Stream(ctx, name)
	switch {
	case err == nil:
		if _, err := g.Check(ctx, name); err != nil {
			return "", err
		}
	case errors.Is(err, njs.ErrStreamNotFound):
		bound, at, err := g.bindings.StreamBinding(ctx, name)
		if err != nil {
			return "", err
		}
		if bound != "" {
			return "", &StreamMismatchError{Stream: name, Bound: bound, BoundAt: at}
		}
	default:
		return "", fmt.Errorf("events: stream %s: %w", name, err)
	}
	if err := create(ctx); err != nil {
		return "", err
	}
	g.forget(name)
	return g.Check(ctx, name)
}

// Adopter records a stream as the one the event log is bound to and resets
// the progress of the groups that consume it (postgres.ConsumerStore).
type Adopter interface {
	Bindings
	// State returns a group's state; ENOTFOUND if it has none.
	State(ctx context.Context, name string) (*holdfast.ConsumerGroupState, error)
	AdoptStream(ctx context.Context, name, identity string, groups []string) (previous string, reset []string, err error)
}

// Adoption is what AdoptStream did.
type Adoption struct {
	Stream   string
	Identity string   // recorded now
	Previous string   // recorded before; "" if none was
	Groups   []string // whose progress was reset; none when the stream was bound already
}

// AdoptStream makes the stream name on js the one the database's event log
// is bound to, knowingly: it deletes the durable consumers of groups on it
// (so that they are created anew and deliver the stream from its first
// message), records its identity and resets the progress of the groups
// that consume it. Events of the stream recorded before that were not yet
// consumed are not in the adopted one. A stream bound already, with every
// group's progress counted in it, is left as it is, so running it again
// changes nothing. Run it with every replica stopped. The stream must exist.
func AdoptStream(ctx context.Context, js njs.JetStream, a Adopter, name string, groups []string) (*Adoption, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("events: adopt stream %s: %w", name, err)
	}
	ad := &Adoption{Stream: name, Identity: StreamIdentity(s.CachedInfo())}
	bound, _, err := a.StreamBinding(ctx, name)
	if err != nil {
		return nil, err
	}
	adopted := bound == ad.Identity
	for _, g := range groups {
		st, err := a.State(ctx, g)
		switch {
		case holdfast.IsCode(err, holdfast.ENOTFOUND):
		case err != nil:
			return nil, err
		case st.StreamIdentity != "" && (st.Stream != name || st.StreamIdentity != ad.Identity):
			adopted = false
		}
	}
	if adopted {
		ad.Previous = bound
		return ad, nil
	}
	for _, g := range groups {
		if err := s.DeleteConsumer(ctx, g); err != nil && !errors.Is(err, njs.ErrConsumerNotFound) {
			return nil, fmt.Errorf("events: adopt stream %s: consumer %s: %w", name, g, err)
		}
	}
	if ad.Previous, ad.Groups, err = a.AdoptStream(ctx, name, ad.Identity, groups); err != nil {
		return nil, err
	}
	return ad, nil
}
