package http

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/ratelimit"
)

// EventQuota is each tenant's quota of client events and their bytes
// (ratelimit.Quota).
type EventQuota interface {
	// Allow takes events and bytes from the tenant's quota if it holds
	// them; it takes nothing from a request it refuses.
	Allow(ctx context.Context, tenantID string, events, bytes int64) (ratelimit.QuotaDecision, error)
	// Policy returns the quota, for the RateLimit-Policy header.
	Policy() ratelimit.QuotaConfig
}

// eventsPath is the one route whose body may exceed BodyLimit, up to EventBodyLimit.
const eventsPath = "/v1/events"

type eventBatch struct {
	Events []holdfast.EventCreate `json:"events"`
}

type eventsAccepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

// eventsView shows the ids of the events POST /v1/events stored.
var eventsView = viewOf(http.StatusAccepted, func(ids []string) any { return eventsAccepted{Accepted: len(ids), IDs: ids} })

// handlePostEvents stores a batch of the tenant's events in the log and
// answers 202 once the log holds every one; 429 with Retry-After past the
// tenant's event quota, 503 with Retry-After when the log pushes back.
// With an Idempotency-Key, the event ids derive from it, so a retry of a
// refused batch stores nothing twice.
func (s *Server) handlePostEvents(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, eventsView, storedAfterWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		if s.EventService == nil {
			return nil, holdfast.Errorf(holdfast.EOVERLOADED, "the event log is not running in this server")
		}
		var in eventBatch
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		if err := s.takeEventQuota(w, r, in.Events); err != nil {
			return nil, err
		}
		key := ""
		if claim != nil {
			key = claim.Key
		}
		return s.EventService.PublishEvents(r.Context(), tenantFrom(r.Context()), key, in.Events)
	})
}

// takeEventQuota takes the batch from the tenant's event quota and sets
// the RateLimit headers; past the quota it returns ERATELIMITED, with
// Retry-After set, and nothing is published. The bytes counted are the
// events' types and properties, what the tenant chooses to store. A quota
// that fails lets the batch through, as the request rate limit does.
func (s *Server) takeEventQuota(rw http.ResponseWriter, r *http.Request, batch []holdfast.EventCreate) error {
	if s.cfg.EventQuota == nil || len(batch) == 0 {
		return nil
	}
	var size int64
	for i := range batch {
		size += int64(len(batch[i].Type) + len(batch[i].Properties))
	}
	d, err := s.cfg.EventQuota.Allow(r.Context(), tenantFrom(r.Context()), int64(len(batch)), size)
	if err != nil {
		return nil
	}
	p := s.cfg.EventQuota.Policy()
	hdr := rw.Header()
	window := strconv.FormatInt(max(1, ceilSeconds(p.Period)), 10)
	hdr.Set("RateLimit-Policy", `"events";q=`+strconv.FormatInt(p.Events, 10)+";w="+window+`, "event-bytes";q=`+strconv.FormatInt(p.Bytes, 10)+";w="+window)
	policy := `"events"`
	if d.Bytes {
		policy = `"event-bytes"`
	}
	hdr.Set("RateLimit", policy+";r="+strconv.Itoa(d.Remaining)+";t="+strconv.FormatInt(ceilSeconds(d.Reset), 10))
	if d.Allowed {
		return nil
	}
	hdr.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10))
	return &holdfast.Error{Code: ERATELIMITED, Message: "the tenant's event quota is used up; retry after Retry-After seconds",
		Extensions: map[string]any{"quota_events": p.Events, "quota_bytes": p.Bytes, "period_seconds": int64(p.Period.Seconds())}}
}

// handleListRollups lists the analytics rollups of [from, to), by minute:
// by default the last hour.
func (s *Server) handleListRollups(w http.ResponseWriter, r *http.Request) {
	if s.AnalyticsService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "analytics is not running in this server"))
		return
	}
	q := r.URL.Query()
	now := time.Now().UTC()
	f := holdfast.RollupFilter{From: now.Add(-time.Hour).Truncate(time.Minute), To: now.Add(time.Minute).Truncate(time.Minute), Type: q.Get("type")}
	if f.Type != "" {
		if err := holdfast.ValidEventType(f.Type); err != nil {
			s.Error(w, r, err)
			return
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "%s must be an RFC 3339 time", p.name))
				return
			}
			*p.t = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "limit must be a positive integer"))
			return
		}
		f.Limit = n
	}
	rollups, err := s.AnalyticsService.ListRollups(r.Context(), tenantFrom(r.Context()), f)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[holdfast.Rollup]{Data: nonNil(rollups)})
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) {
	if s.AuditService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "the audit trail is not running in this server"))
		return
	}
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	records, next, err := s.AuditService.ListAudit(r.Context(), tenantFrom(r.Context()), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.AuditRecord]{Data: nonNil(records), NextCursor: next})
}

// handleVerifyAudit verifies a page of the tenant's audit trail: from the
// latest checkpoint (from=checkpoint, the default), from the first record
// (from=start), or from the checkpoint a cursor names.
func (s *Server) handleVerifyAudit(w http.ResponseWriter, r *http.Request) {
	if s.AuditService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "the audit trail is not running in this server"))
		return
	}
	q := r.URL.Query()
	req := holdfast.AuditVerifyRequest{Cursor: q.Get("cursor")}
	switch q.Get("from") {
	case "", "checkpoint":
	case "start":
		req.FromStart = true
	default:
		s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "from must be checkpoint or start"))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > holdfast.MaxAuditVerifyPage {
			s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "limit must be an integer between 1 and %d", holdfast.MaxAuditVerifyPage))
			return
		}
		req.Limit = n
	}
	v, err := s.AuditService.VerifyAudit(r.Context(), tenantFrom(r.Context()), req)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, v)
}

func (s *Server) handleListConsumers(w http.ResponseWriter, r *http.Request) {
	if s.ConsumerService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "the consumer groups are not running in this server"))
		return
	}
	list, err := s.ConsumerService.ListConsumers(r.Context())
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, struct {
		Data []*holdfast.ConsumerStatus `json:"data"`
	}{nonNil(list)})
}

// pauseRequest pauses a group until resumed, or for a while, or until a time.
type pauseRequest struct {
	For    string     `json:"for,omitempty"`   // a Go duration, e.g. "30s"
	Until  *time.Time `json:"until,omitempty"` // RFC 3339
	Reason string     `json:"reason,omitempty"`
}

// maxPause bounds a timed pause; an open-ended one is the way to stop longer.
const maxPause = 7 * 24 * time.Hour

// consumerView shows a consumer group paused or resumed.
var consumerView = viewOf(http.StatusOK, func(c *holdfast.ConsumerStatus) any { return c })

func (s *Server) handlePauseConsumer(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, consumerView, storedAfterWrite, func(*holdfast.IdempotencyClaim) (any, error) { return s.pauseConsumer(r) })
}

func (s *Server) pauseConsumer(r *http.Request) (*holdfast.ConsumerStatus, error) {
	if s.ConsumerService == nil {
		return nil, holdfast.Errorf(holdfast.EOVERLOADED, "the consumer groups are not running in this server")
	}
	var in pauseRequest
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return nil, err
		}
	}
	if len(in.Reason) > 200 {
		return nil, holdfast.Errorf(holdfast.EINVALID, "reason is longer than 200 bytes")
	}
	var until time.Time
	switch {
	case in.For != "" && in.Until != nil:
		return nil, holdfast.Errorf(holdfast.EINVALID, "give for or until, not both")
	case in.For != "":
		d, err := time.ParseDuration(in.For)
		if err != nil || d <= 0 || d > maxPause {
			return nil, holdfast.Errorf(holdfast.EINVALID, "for must be a duration such as 30s, at most %s", maxPause)
		}
		until = time.Now().Add(d)
	case in.Until != nil:
		until = *in.Until
		if time.Until(until) > maxPause {
			return nil, holdfast.Errorf(holdfast.EINVALID, "until must be within %s", maxPause)
		}
	}
	reason := in.Reason
	if reason == "" {
		reason = "paused by an operator"
	}
	if err := s.ConsumerService.PauseConsumer(r.Context(), r.PathValue("name"), until, reason); err != nil {
		return nil, err
	}
	return s.consumer(r)
}

func (s *Server) handleResumeConsumer(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, consumerView, storedAfterWrite, func(*holdfast.IdempotencyClaim) (any, error) {
		if s.ConsumerService == nil {
			return nil, holdfast.Errorf(holdfast.EOVERLOADED, "the consumer groups are not running in this server")
		}
		if err := s.ConsumerService.ResumeConsumer(r.Context(), r.PathValue("name")); err != nil {
			return nil, err
		}
		return s.consumer(r)
	})
}

// consumer returns the status of the group the request names.
func (s *Server) consumer(r *http.Request) (*holdfast.ConsumerStatus, error) {
	list, err := s.ConsumerService.ListConsumers(r.Context())
	if err != nil {
		return nil, err
	}
	for _, c := range list {
		if c.Name == r.PathValue("name") {
			return c, nil
		}
	}
	return nil, holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", r.PathValue("name"))
}
