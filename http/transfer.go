package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

// transferView shows a transfer created by POST /v1/transfers.
var transferView = viewOf(http.StatusCreated, func(ts []*holdfast.Transfer) any { return ts[0] })

func (s *Server) handleCreateTransfer(w http.ResponseWriter, r *http.Request) {
	s.idempotentInWrite(w, r, transferView, func(claim *holdfast.IdempotencyClaim) (any, *holdfast.Outcome, error) {
		var in holdfast.TransferCreate
		if err := decode(r, &in); err != nil {
			return nil, nil, err
		}
		if err := in.Validate(); err != nil {
			return nil, nil, err
		}
		return s.TransferService.CreateTransfers(r.Context(), holdfast.TransferRequest{
			TenantID: tenantFrom(r.Context()), Transfers: []holdfast.TransferCreate{in}, Idempotency: claim})
	})
}

type linkedTransfers struct {
	Transfers []holdfast.TransferCreate `json:"transfers"`
}

type linkedTransfersView struct {
	Transfers []*holdfast.Transfer `json:"transfers"`
}

// linkedView shows the transfers of POST /v1/linked-transfers.
var linkedView = viewOf(http.StatusCreated, func(ts []*holdfast.Transfer) any { return linkedTransfersView{ts} })

func (s *Server) handleCreateLinkedTransfers(w http.ResponseWriter, r *http.Request) {
	s.idempotentInWrite(w, r, linkedView, func(claim *holdfast.IdempotencyClaim) (any, *holdfast.Outcome, error) {
		var in linkedTransfers
		if err := decode(r, &in); err != nil {
			return nil, nil, err
		}
		if len(in.Transfers) == 0 || len(in.Transfers) > holdfast.MaxLinked {
			return nil, nil, holdfast.Errorf(holdfast.EINVALID, "transfers must hold 1 to %d transfers", holdfast.MaxLinked)
		}
		return s.TransferService.CreateTransfers(r.Context(), holdfast.TransferRequest{
			TenantID: tenantFrom(r.Context()), Transfers: in.Transfers, Linked: true, Idempotency: claim})
	})
}

func (s *Server) handleGetTransfer(w http.ResponseWriter, r *http.Request) {
	t, err := s.TransferService.FindTransfer(r.Context(), tenantFrom(r.Context()), r.PathValue("id"))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, t)
}

func (s *Server) handleListTransfers(w http.ResponseWriter, r *http.Request) {
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	ts, next, err := s.TransferService.ListTransfers(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, list[*holdfast.Transfer]{Data: nonNil(ts), NextCursor: next})
}

func (s *Server) handlePostTransfer(w http.ResponseWriter, r *http.Request) {
	s.resolveTransfer(w, r, holdfast.StatusPosted)
}

func (s *Server) handleVoidTransfer(w http.ResponseWriter, r *http.Request) {
	s.resolveTransfer(w, r, holdfast.StatusVoided)
}

// resolveTransfer posts or voids the hold {id}. The body is optional: an
// empty one posts or voids the whole hold under a new id.
func (s *Server) resolveTransfer(w http.ResponseWriter, r *http.Request, action string) {
	s.idempotentInWrite(w, r, transferView, func(claim *holdfast.IdempotencyClaim) (any, *holdfast.Outcome, error) {
		var in holdfast.TransferResolve
		if r.ContentLength != 0 {
			if err := decode(r, &in); err != nil {
				return nil, nil, err
			}
		}
		t, replayed, err := s.TransferService.ResolveTransfer(r.Context(), holdfast.ResolveRequest{
			TenantID: tenantFrom(r.Context()), PendingID: r.PathValue("id"), Action: action, In: in, Idempotency: claim})
		if err != nil || replayed != nil {
			return nil, replayed, err
		}
		return []*holdfast.Transfer{t}, nil, nil
	})
}
