package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

// EWEBHOOKSOFF: the service runs without a key to seal endpoint secrets,
// so it offers no webhooks (see --webhook-secret-key).
const EWEBHOOKSOFF = "webhooks-not-configured"

// Views of the webhook POSTs. A created or rotated endpoint shows its
// secret once; the outcome stored for its Idempotency-Key is redacted.
var (
	webhookEndpointView = viewOf(http.StatusCreated, func(e *holdfast.WebhookEndpoint) any { return e })
	webhookRotatedView  = viewOf(http.StatusOK, func(e *holdfast.WebhookEndpoint) any { return e })
	webhookReplayView   = viewOf(http.StatusAccepted, func(r *holdfast.WebhookReplayed) any { return r })
	webhookRecoverView  = viewOf(http.StatusAccepted, func(r *holdfast.WebhookRecovered) any { return r })
)

// webhooks returns the service, or answers EWEBHOOKSOFF and returns nil.
func (s *Server) webhooks(w http.ResponseWriter, r *http.Request) holdfast.WebhookService {
	if s.WebhookService == nil {
		s.Error(w, r, holdfast.Errorf(EWEBHOOKSOFF, "webhooks are not configured on this service: it has no key to seal endpoint secrets with"))
	}
	return s.WebhookService
}

// endpointID reads the {id} path value: a malformed one names no endpoint.
func endpointID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if holdfast.ValidID("id", id) != nil {
		return "", holdfast.Errorf(holdfast.ENOTFOUND, "webhook endpoint not found")
	}
	return holdfast.CanonicalID(id), nil
}

func (s *Server) handleCreateWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	s.idempotent(w, r, webhookEndpointView, storedByWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		var in holdfast.WebhookEndpointCreate
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		if err := in.Validate(); err != nil {
			return nil, err
		}
		return svc.CreateWebhookEndpoint(r.Context(), tenantFrom(r.Context()), in, claim)
	})
}

func (s *Server) handleListWebhookEndpoints(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	es, next, err := svc.ListWebhookEndpoints(r.Context(), tenantFrom(r.Context()), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.WebhookEndpoint]{Data: nonNil(es), NextCursor: next})
}

func (s *Server) handleGetWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	s.withEndpoint(w, r, func(svc holdfast.WebhookService, id string) (any, error) {
		return svc.WebhookEndpoint(r.Context(), tenantFrom(r.Context()), id)
	})
}

func (s *Server) handleUpdateWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	s.withEndpoint(w, r, func(svc holdfast.WebhookService, id string) (any, error) {
		var in holdfast.WebhookEndpointUpdate
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		if err := in.Validate(); err != nil {
			return nil, err
		}
		return svc.UpdateWebhookEndpoint(r.Context(), tenantFrom(r.Context()), id, in)
	})
}

func (s *Server) handleDeleteWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	id, err := endpointID(r)
	if err == nil {
		err = svc.DeleteWebhookEndpoint(r.Context(), tenantFrom(r.Context()), id)
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// withEndpoint answers a GET or PATCH of one endpoint with 200 and what fn returns.
func (s *Server) withEndpoint(w http.ResponseWriter, r *http.Request, fn func(holdfast.WebhookService, string) (any, error)) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	id, err := endpointID(r)
	var v any
	if err == nil {
		v, err = fn(svc, id)
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, v)
}

func (s *Server) handleRotateWebhookSecret(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	s.idempotent(w, r, webhookRotatedView, storedByWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		id, err := endpointID(r)
		if err != nil {
			return nil, err
		}
		return svc.RotateWebhookSecret(r.Context(), tenantFrom(r.Context()), id, claim)
	})
}

func (s *Server) handleListWebhookAttempts(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	id, err := endpointID(r)
	var page holdfast.Page
	if err == nil {
		page, err = pageFrom(r)
	}
	var as []*holdfast.WebhookAttempt
	var next string
	if err == nil {
		as, next, err = svc.ListWebhookAttempts(r.Context(), tenantFrom(r.Context()), id, page)
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.WebhookAttempt]{Data: nonNil(as), NextCursor: next})
}

// maxMessageID is the longest message id a replay names (an event id).
const maxMessageID = 200

func (s *Server) handleReplayWebhookMessage(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	s.idempotent(w, r, webhookReplayView, storedAfterWrite, func(*holdfast.IdempotencyClaim) (any, error) {
		id, err := endpointID(r)
		if err != nil {
			return nil, err
		}
		msg := r.PathValue("message_id")
		if msg == "" || len(msg) > maxMessageID {
			return nil, holdfast.Errorf(holdfast.ENOTFOUND, "message not found for this endpoint")
		}
		return svc.ReplayWebhookMessage(r.Context(), tenantFrom(r.Context()), id, msg)
	})
}

func (s *Server) handleRecoverWebhookMessages(w http.ResponseWriter, r *http.Request) {
	svc := s.webhooks(w, r)
	if svc == nil {
		return
	}
	s.idempotent(w, r, webhookRecoverView, storedAfterWrite, func(*holdfast.IdempotencyClaim) (any, error) {
		id, err := endpointID(r)
		if err != nil {
			return nil, err
		}
		var in holdfast.WebhookRecovery
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		if in.Since.IsZero() {
			return nil, holdfast.Errorf(holdfast.EINVALID, "since is required: the time from which failed messages are recovered")
		}
		return svc.RecoverWebhookMessages(r.Context(), tenantFrom(r.Context()), id, in.Since)
	})
}
