package http

import (
	"net/http"

	"github.com/holdfast/holdfast"
)

func (s *Server) handleCreateTransfer(w http.ResponseWriter, r *http.Request) {
	var in holdfast.TransferCreate
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	if err := in.Validate(); err != nil {
		s.Error(w, r, err)
		return
	}
	setRender(r, http.StatusCreated, func(v any) any { return v.([]*holdfast.Transfer)[0] })
	out, err := s.TransferService.CreateTransfers(r.Context(), tenantFrom(r.Context()), []holdfast.TransferCreate{in}, false)
	if replay(w, r) {
		return
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusCreated, out[0])
}

type linkedTransfers struct {
	Transfers []holdfast.TransferCreate `json:"transfers"`
}

type linkedTransfersView struct {
	Transfers []*holdfast.Transfer `json:"transfers"`
}

func (s *Server) handleCreateLinkedTransfers(w http.ResponseWriter, r *http.Request) {
	var in linkedTransfers
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	if len(in.Transfers) == 0 || len(in.Transfers) > holdfast.MaxLinked {
		s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "transfers must hold 1 to %d transfers", holdfast.MaxLinked))
		return
	}
	setRender(r, http.StatusCreated, func(v any) any { return linkedTransfersView{v.([]*holdfast.Transfer)} })
	out, err := s.TransferService.CreateTransfers(r.Context(), tenantFrom(r.Context()), in.Transfers, true)
	if replay(w, r) {
		return
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusCreated, linkedTransfersView{out})
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
