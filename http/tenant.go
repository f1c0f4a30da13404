package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

func (s *Server) handleCreateTenant(w http.ResponseWriter, r *http.Request) {
	var in holdfast.TenantCreate
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	setRender(r, http.StatusCreated, func(v any) any { return v })
	t, k, err := s.TenantService.CreateTenant(r.Context(), in)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusCreated, &holdfast.NewTenant{Tenant: t, APIKey: k})
}

func (s *Server) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	setRender(r, http.StatusCreated, func(v any) any { return v })
	k, err := s.TenantService.CreateAPIKey(r.Context(), tenantFrom(r.Context()))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusCreated, k)
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
