package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

// accountView shows an account created by POST /v1/accounts.
var accountView = viewOf(http.StatusCreated, func(a *holdfast.Account) any { return a })

func (s *Server) handleCreateAccount(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, accountView, storedByWrite, func(claim *holdfast.IdempotencyClaim) (any, error) {
		var in holdfast.AccountCreate
		if err := decode(r, &in); err != nil {
			return nil, err
		}
		if err := in.Validate(); err != nil {
			return nil, err
		}
		return s.AccountService.CreateAccount(r.Context(), tenantFrom(r.Context()), in, claim)
	})
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
