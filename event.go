package holdfast

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Event types the ledger emits through the outbox. Client events use their
// own types, which may not start with one of the ledger's prefixes.
const (
	EventAccountCreated   = "account.created"
	EventTransferPosted   = "transfer.posted"
	EventTransferPending  = "transfer.pending"
	EventTransferVoided   = "transfer.voided"
	EventTransferExpired  = "transfer.expired"
	EventTransferRejected = "transfer.rejected"
	EventReceiptStored    = "receipt.stored"
	EventReceiptProcessed = "receipt.processed"
)

// EventVersion is the version of the event envelope.
const EventVersion = 1

// Event limits.
const (
	// MaxEventBatch is the most events one POST /v1/events may carry.
	MaxEventBatch = 1000
	// MaxEventProperties is the largest properties object of a client event, in bytes of JSON.
	MaxEventProperties = 4 << 10
	// MaxEventType is the longest event type.
	MaxEventType = 64
)

// Event is the envelope of every event in the log: stable, versioned JSON.
type Event struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Version    int             `json:"version"`
	Source     string          `json:"source"` // "ledger" or "client"
	TenantID   string          `json:"tenant"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`

	// Topic is where the outbox relays the event: TopicEvents (the event
	// log) or TopicJobs (a job message, Data alone). Not part of the envelope.
	Topic string `json:"-"`
}

// Outbox topics.
const (
	TopicEvents = "events"
	TopicJobs   = "jobs"
)

// NATS names of the jobs the outbox relays (TopicJobs), unless configured:
// the work-queue stream that holds them and the subject of a ReceiptJob in
// it. The relay (package events) publishes there; the receipt pipeline
// (package receipts) creates the stream and consumes the subject. They
// live here because neither package imports the other.
const (
	JobsStream         = "jobs"
	ReceiptJobsSubject = JobsStream + ".receipts"
)

// Event sources.
const (
	SourceLedger = "ledger"
	SourceClient = "client"
)

// EventCreate is a client event as posted to /v1/events.
type EventCreate struct {
	// ID, when given, identifies the event: a retry with the same id is
	// stored once. Default: derived from the request's Idempotency-Key and
	// the event's index, or random.
	ID         string          `json:"id,omitempty"`
	Type       string          `json:"type"`
	OccurredAt *time.Time      `json:"occurred_at,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// Validate returns EINVALID unless the event is acceptable: a type of 1..64
// characters [a-z0-9_] in dot-separated words, not a ledger type; an
// optional id that is a UUID; properties a JSON object of at most
// MaxEventProperties bytes.
func (e *EventCreate) Validate() error {
	if err := ValidEventType(e.Type); err != nil {
		return err
	}
	for _, p := range []string{"account.", "transfer.", "receipt."} {
		if strings.HasPrefix(e.Type, p) {
			return Errorf(EINVALID, "event type %q is reserved for the ledger's own events", e.Type)
		}
	}
	if e.ID != "" {
		if err := ValidID("event id", e.ID); err != nil {
			return err
		}
	}
	if len(e.Properties) > MaxEventProperties {
		return Errorf(EINVALID, "event properties are larger than %d bytes", MaxEventProperties)
	}
	if len(e.Properties) > 0 && e.Properties[0] != '{' {
		return Errorf(EINVALID, "event properties must be a JSON object")
	}
	return nil
}

// ValidEventType returns EINVALID unless t is 1..64 characters of
// lower-case words [a-z0-9_] separated by single dots, starting with a letter.
func ValidEventType(t string) error {
	bad := len(t) == 0 || len(t) > MaxEventType || t[0] < 'a' || t[0] > 'z' || t[len(t)-1] == '.'
	for i := 0; !bad && i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		case c == '.' && t[i-1] != '.':
		default:
			bad = true
		}
	}
	if bad {
		return Errorf(EINVALID, "event type must be 1 to %d characters: lower-case words of [a-z0-9_] separated by dots", MaxEventType)
	}
	return nil
}

// EventService ingests client events into the log.
type EventService interface {
	// PublishEvents stores the events durably in the log and returns their
	// ids; EOVERLOADED when the log or the in-flight window is full (nothing
	// is dropped silently: the caller retries).
	PublishEvents(ctx context.Context, tenantID, idempotencyKey string, in []EventCreate) ([]string, error)
}

// Rollup is one minute of one event type and currency for a tenant.
type Rollup struct {
	Minute    time.Time `json:"minute"`
	Type      string    `json:"type"`
	Currency  string    `json:"currency,omitempty"`
	Count     int64     `json:"count"`
	AmountSum string    `json:"amount_sum"` // a decimal integer of minor units; it may exceed 64 bits
}

// RollupFilter selects rollups: [From, To) minutes, optionally one type.
type RollupFilter struct {
	From, To time.Time
	Type     string
	Limit    int
}

// AuditRecord is one record of a tenant's audit trail.
type AuditRecord struct {
	Seq        int64           `json:"seq"`
	EventID    string          `json:"event_id"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
	Event      json.RawMessage `json:"event"`
	PrevHash   string          `json:"prev_hash"`
	Hash       string          `json:"hash"`
}

// MaxAuditVerifyPage is the most records one verification call recomputes,
// and its default.
const MaxAuditVerifyPage = 10_000

// AuditVerifyRequest says where a verification of a tenant's audit trail
// starts. By default it continues from the latest checkpoint: the last
// record an earlier call found right.
type AuditVerifyRequest struct {
	// Cursor continues from the checkpoint an earlier call returned as
	// NextCursor (a full re-verification goes on this way).
	Cursor string
	// FromStart verifies from the first record, trusting no checkpoint: a
	// full re-verification, paged like any other, which compares every
	// checkpoint it passes with the hash it recomputed there.
	FromStart bool
	// Limit is the most records this call verifies. Default, and at most,
	// MaxAuditVerifyPage.
	Limit int
}

// AuditCheckpoint is a record a verification found right, from which later
// ones continue.
type AuditCheckpoint struct {
	Seq        int64     `json:"seq"`
	Hash       string    `json:"hash"`
	VerifiedAt time.Time `json:"verified_at"`
}

// AuditVerification is what one verification call found: the records it
// recomputed (FromSeq..ToSeq), where it started (the trail's first record,
// or a checkpoint), how far the trail is verified, and whether more
// remains (NextCursor continues).
type AuditVerification struct {
	OK bool `json:"ok"`
	// Start is "start" (from the trail's first record) or "checkpoint"
	// (from Checkpoint, which an earlier verification found right).
	Start      string           `json:"start"`
	Checkpoint *AuditCheckpoint `json:"checkpoint,omitempty"`
	FromSeq    int64            `json:"from_seq,omitempty"` // the first record this call recomputed
	ToSeq      int64            `json:"to_seq,omitempty"`   // the last
	Records    int64            `json:"records"`            // recomputed by this call, up to the first break
	// VerifiedThrough is the last record known to follow from the start of
	// the trail: by this call, from the start or from its checkpoint.
	VerifiedThrough int64  `json:"verified_through"`
	HeadSeq         int64  `json:"head_seq"` // the trail's last record when the call ran
	More            bool   `json:"more"`     // records after ToSeq remain to verify
	NextCursor      string `json:"next_cursor,omitempty"`
	FirstBad        int64  `json:"first_bad_seq,omitempty"`
	Reason          string `json:"reason,omitempty"`
	HeadHash        string `json:"head_hash,omitempty"` // the last record's hash, when verified through it
}

// AnalyticsService reads the analytics consumer's rollups.
type AnalyticsService interface {
	ListRollups(ctx context.Context, tenantID string, f RollupFilter) ([]Rollup, error)
}

// AuditService reads and verifies a tenant's audit trail.
type AuditService interface {
	ListAudit(ctx context.Context, tenantID string, page Page) ([]*AuditRecord, string, error)
	// VerifyAudit recomputes a page of the tenant's hash chain (see
	// AuditVerifyRequest). Errors: EINVALID for a bad cursor or limit,
	// ECONFLICT while another verification of the tenant runs.
	VerifyAudit(ctx context.Context, tenantID string, req AuditVerifyRequest) (*AuditVerification, error)
}

// ConsumerStatus is one consumer group as the admin API shows it.
type ConsumerStatus struct {
	Name          string     `json:"name"`
	Pending       uint64     `json:"pending"`     // in the stream, not yet delivered
	InFlight      int        `json:"in_flight"`   // delivered, not yet acknowledged
	Redelivered   int        `json:"redelivered"` // delivered more than once, not yet acknowledged
	LastApplied   int64      `json:"last_applied_seq"`
	StreamLast    uint64     `json:"stream_last_seq"`
	LagMessages   uint64     `json:"lag_messages"` // stream messages not yet acknowledged (a message holds one event or a batch's)
	LagSeconds    float64    `json:"lag_seconds"`
	Paused        bool       `json:"paused"`
	PausedUntil   *time.Time `json:"paused_until,omitempty"`
	PauseReason   string     `json:"pause_reason,omitempty"`
	AckWait       string     `json:"ack_wait"`
	MaxBatch      int        `json:"max_batch"`
	MaxAckPending int        `json:"max_ack_pending"`
	// StreamIdentity is the identity of the stream the group's progress is
	// counted in ("" until a start records it).
	StreamIdentity string `json:"stream_identity,omitempty"`
	// NATSConnected says whether this replica is connected to NATS now;
	// NATSError, when set, why the stream figures (pending, in flight,
	// redelivered, stream_last_seq, lag) could not be read: they are zero
	// then, meaning unknown.
	NATSConnected bool   `json:"nats_connected"`
	NATSError     string `json:"nats_error,omitempty"`
}

// ConsumerService shows and steers the consumer groups.
type ConsumerService interface {
	ListConsumers(ctx context.Context) ([]*ConsumerStatus, error)
	// PauseConsumer stops delivery to a group in every replica until
	// ResumeConsumer, or until the given time when it is not zero.
	PauseConsumer(ctx context.Context, name string, until time.Time, reason string) error
	ResumeConsumer(ctx context.Context, name string) error
}

// EventDelivery is an event as a consumer receives it: its position in the
// stream (the stream's identity, the message's sequence and, in a message
// that holds several events, the event's index among them), the envelope,
// and the envelope's bytes exactly as stored.
type EventDelivery struct {
	// StreamID identifies the stream the sequence is counted in (see
	// events.StreamIdentity); "" when the consumer checks no identity.
	StreamID string
	Seq      uint64
	Index    int
	Event    Event
	Raw      []byte
}

// OutboxMessage is one row of the transactional outbox, published as one
// stream message with ID as its deduplication id: a single event (ID is the
// event's), or the events of one tenant and type that a group-commit batch
// wrote, in order (one message instead of one each: a stream message costs
// the same to store, deliver and acknowledge whatever it holds).
type OutboxMessage struct {
	ID     string
	Events []Event
	// Stored is set by the relay's publish when the stream acknowledged
	// the message: a round that fails still deletes those rows, so that a
	// topic blocked for longer than the duplicate window does not publish
	// them a second time once it flows again.
	Stored bool
}

// ConsumerGroupState is a group's shared state: its position and whether it
// is paused.
type ConsumerGroupState struct {
	Name           string
	Stream         string // the stream it consumes; "" until a start records it
	StreamIdentity string // the identity of the stream its sequences are counted in; "" until recorded
	AppliedFloor   uint64 // every sequence at or below it is applied
	LastApplied    uint64
	Paused         bool       // by an operator, until resumed
	PausedUntil    *time.Time // automatically, until then
	PauseReason    string
}

// PausedAt reports whether the group is paused at time now.
func (s *ConsumerGroupState) PausedAt(now time.Time) bool {
	return s.Paused || s.PausedUntil != nil && now.Before(*s.PausedUntil)
}

// TransferEventType returns the type of the event a new transfer emits:
// transfer.pending for a hold, and for a transfer that moves money or
// resolves a hold, its status's (transfer.posted, transfer.voided,
// transfer.expired).
func TransferEventType(t *Transfer) string {
	switch {
	case t.Pending:
		return EventTransferPending
	case t.Status == StatusVoided:
		return EventTransferVoided
	case t.Status == StatusExpired:
		return EventTransferExpired
	}
	return EventTransferPosted
}

// OutboxBacklog is what waits in the outbox for one topic: the rows not
// yet relayed (counted up to a cap, so that reading it stays cheap
// whatever the backlog: AtLeast says the count stopped there) and when
// the oldest of them occurred (zero when there is none).
type OutboxBacklog struct {
	Topic   string
	Rows    int64
	AtLeast bool
	Oldest  time.Time
}
