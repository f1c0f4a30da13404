package webhooks

import (
	"context"
	"time"

	"github.com/holdfast/holdfast"
)

// Delivery is a leased delivery: one message to one endpoint, and what it
// takes to send it.
type Delivery struct {
	ID         int64
	TenantID   string
	EndpointID string
	MessageID  string // the event's id: webhook-id on every attempt
	Attempt    int    // this attempt's number, from 1
	URL        string
	// Secret and Previous are the endpoint's secrets as sealed by a
	// Cipher (context: the endpoint's id); Previous signs too until
	// PreviousUntil.
	Secret        []byte
	Previous      []byte
	PreviousUntil *time.Time
	Body          []byte
	CreatedAt     time.Time // when the message was written for the endpoint
}

// Outcome is how one attempt ended.
type Outcome struct {
	Delivery   *Delivery
	StartedAt  time.Time
	Latency    time.Duration
	StatusCode int    // 0 without a response
	Result     string // holdfast.WebhookSucceeded, WebhookFailed, WebhookTimeout or WebhookRefused
	Error      string
	// Next is when the next attempt is due; nil when none is (it succeeded,
	// or that was its last attempt: it fails).
	Next *time.Time
}

// Lease asks for due deliveries.
type Lease struct {
	Now time.Time
	// Max is the most deliveries leased.
	Max int
	// PerEndpoint caps an endpoint's deliveries leased at once, by any
	// replica; a half-open breaker lets one through.
	PerEndpoint int
	// Threshold is the breaker's: an endpoint with this many consecutive
	// failures is half-open once its open time has passed.
	Threshold int
	// For is how long the lease lasts: a delivery still leased past it
	// (its replica crashed) is due again.
	For time.Duration
	// Exclude lists endpoints not to lease for now (their rate is used up).
	Exclude []string
}

// Store is what delivery needs from the database (postgres.WebhookStore).
type Store interface {
	// Lease leases due deliveries of enabled endpoints whose breaker is not
	// open, oldest due first, counting each as an attempt begun.
	Lease(ctx context.Context, l Lease) ([]*Delivery, error)
	// Record records an attempt and the delivery's new state (unless a
	// later attempt has begun since), and updates the endpoint's health
	// with health, in one transaction; when health says to disable the
	// endpoint, it is disabled and an EventWebhookEndpointDisabled event is
	// written to the outbox with it. It returns whether it disabled it.
	Record(ctx context.Context, o *Outcome, health func(Health) (Health, bool)) (bool, error)
	// Stats counts the endpoints by state and measures the oldest due
	// delivery's wait, at now.
	Stats(ctx context.Context, now time.Time) (*Stats, error)
}

// Stats is the state of delivery across every replica.
type Stats struct {
	Endpoints map[string]int // by state: holdfast.WebhookHealthy, …
	Due       int            // deliveries due and not leased
	OldestDue time.Duration  // how long the oldest of them has been due
}

// Fanouter writes the events to deliver: a message and a delivery per
// enabled endpoint of the event's tenant that subscribes to its type,
// exactly once (in the transaction that records the events' sequences).
type Fanouter interface {
	Fanout(ctx context.Context, batch []holdfast.EventDelivery) error
}

// Fanout is the webhooks consumer group's Applier: it writes the
// deliveries, then wakes this replica's dispatcher so that healthy
// endpoints get their events without waiting for its poll.
type Fanout struct {
	Store      Fanouter
	Dispatcher *Dispatcher // may be nil
}

// ApplyEvents writes the batch's deliveries, exactly once.
func (f Fanout) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	if err := f.Store.Fanout(ctx, batch); err != nil {
		return err
	}
	if f.Dispatcher != nil {
		f.Dispatcher.Wake()
	}
	return nil
}
