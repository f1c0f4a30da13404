package http

import (
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// apiKeyReplay is a created key as a replay shows it: a secret is never at
// rest, so the replay says the key was created, and that its secret cannot
// be shown again (secret null, secret_redacted true). Its members are
// holdfast.APIKey's, in the same order.
type apiKeyReplay struct {
	ID             string     `json:"id"`
	TenantID       string     `json:"tenant_id"`
	Prefix         string     `json:"prefix"`
	Secret         *string    `json:"secret"`
	SecretRedacted bool       `json:"secret_redacted"`
	CreatedAt      time.Time  `json:"created_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

// showKey shows a created key: with its secret in the response that
// created it, and as apiKeyReplay when it comes without one (from the
// outcome stored for its Idempotency-Key).
func showKey(k *holdfast.APIKey) any {
	if k.Secret != "" {
		return k
	}
	return apiKeyReplay{ID: k.ID, TenantID: k.TenantID, Prefix: k.Prefix, SecretRedacted: true, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

// newTenantView is a created tenant and its first key, shown as showKey does.
type newTenantView struct {
	Tenant *holdfast.Tenant `json:"tenant"`
	APIKey any              `json:"api_key"`
}

// Views of POST /v1/admin/tenants and POST /v1/api-keys.
var (
	tenantView = viewOf(http.StatusCreated, func(nt *holdfast.NewTenant) any {
		return newTenantView{Tenant: nt.Tenant, APIKey: showKey(nt.APIKey)}
	})
	apiKeyView = viewOf(http.StatusCreated, showKey)
)

func (s *Server) handleCreateTenant(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, tenantView, storedByWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		var in holdfast.TenantCreate
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		t, k, err := s.TenantService.CreateTenant(r.Context(), in, claim)
		if err != nil {
			return nil, err
		}
		return &holdfast.NewTenant{Tenant: t, APIKey: k}, nil
	})
}

func (s *Server) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, apiKeyView, storedByWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		return s.TenantService.CreateAPIKey(r.Context(), tenantFrom(r.Context()), claim)
	})
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
