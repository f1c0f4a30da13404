package http

import (
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// apiKeyReplay is a created key as the response stored for an
// Idempotency-Key shows it: a secret is never at rest, so the replay says
// the key was created, and that its secret cannot be shown again (secret
// null, secret_redacted true).
// Its members are holdfast.APIKey's, in the same order.
type apiKeyReplay struct {
	ID             string     `json:"id"`
	TenantID       string     `json:"tenant_id"`
	Prefix         string     `json:"prefix"`
	Secret         *string    `json:"secret"`
	SecretRedacted bool       `json:"secret_redacted"`
	CreatedAt      time.Time  `json:"created_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

func withoutSecret(k *holdfast.APIKey) apiKeyReplay {
	return apiKeyReplay{ID: k.ID, TenantID: k.TenantID, Prefix: k.Prefix, SecretRedacted: true, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

// tenantReplay is a created tenant as its stored response shows it.
type tenantReplay struct {
	Tenant *holdfast.Tenant `json:"tenant"`
	APIKey apiKeyReplay     `json:"api_key"`
}

func (s *Server) handleCreateTenant(w http.ResponseWriter, r *http.Request) {
	var in holdfast.TenantCreate
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	setRender(r, http.StatusCreated, func(v any) any {
		nt := v.(*holdfast.NewTenant)
		return tenantReplay{Tenant: nt.Tenant, APIKey: withoutSecret(nt.APIKey)}
	})
	t, k, err := s.TenantService.CreateTenant(r.Context(), in)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respondWithSecret(w, r, http.StatusCreated, &holdfast.NewTenant{Tenant: t, APIKey: k})
}

func (s *Server) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	setRender(r, http.StatusCreated, func(v any) any { return withoutSecret(v.(*holdfast.APIKey)) })
	k, err := s.TenantService.CreateAPIKey(r.Context(), tenantFrom(r.Context()))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respondWithSecret(w, r, http.StatusCreated, k)
}

// respondWithSecret sends v, which shows a secret, as rendered now: unlike
// respond, not the response stored for a replay, which leaves the secret out.
func (s *Server) respondWithSecret(w http.ResponseWriter, r *http.Request, status int, v any) {
	resp, err := render(status, v)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	write(w, resp)
}

func (s *Server) handleListAPIKeys(w http.ResponseWriter, r *http.Request) {
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	keys, next, err := s.TenantService.ListAPIKeys(r.Context(), tenantFrom(r.Context()), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.APIKey]{Data: nonNil(keys), NextCursor: next})
}

func (s *Server) handleRevokeAPIKey(w http.ResponseWriter, r *http.Request) {
	tenant := tenantFrom(r.Context())
	id := r.PathValue("id")
	if holdfast.ValidID("id", id) != nil {
		s.Error(w, r, holdfast.Errorf(holdfast.ENOTFOUND, "api key not found"))
		return
	}
	if err := s.TenantService.RevokeAPIKey(r.Context(), tenant, holdfast.CanonicalID(id)); err != nil {
		s.Error(w, r, err)
		return
	}
	s.auth.forgetTenant(tenant)
	w.WriteHeader(http.StatusNoContent)
}
