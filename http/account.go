package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

func (s *Server) handleCreateAccount(w http.ResponseWriter, r *http.Request) {
	var in holdfast.AccountCreate
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	if err := in.Validate(); err != nil {
		s.Error(w, r, err)
		return
	}
	setRender(r, http.StatusCreated, func(v any) any { return v })
	a, err := s.AccountService.CreateAccount(r.Context(), tenantFrom(r.Context()), in)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusCreated, a)
}

func (s *Server) handleGetAccount(w http.ResponseWriter, r *http.Request) {
	a, err := s.AccountService.FindAccount(r.Context(), tenantFrom(r.Context()), holdfast.CanonicalID(r.PathValue("id")))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, a)
}

func (s *Server) handleListAccounts(w http.ResponseWriter, r *http.Request) {
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	accounts, next, err := s.AccountService.ListAccounts(r.Context(), tenantFrom(r.Context()), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.Account]{Data: nonNil(accounts), NextCursor: next})
}

// nonNil makes an empty list render as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
