package http

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// searchPage is the answer of GET /v1/transfers.
type searchPage struct {
	Data       []*holdfast.Transfer `json:"data"`
	HasMore    bool                 `json:"has_more"`
	NextCursor string               `json:"next_cursor,omitempty"`
}

// handleSearchTransfers answers GET /v1/transfers: the tenant's transfers
// matching the filters, newest first.
func (s *Server) handleSearchTransfers(w http.ResponseWriter, r *http.Request) {
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	q, err := transferQueryFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	ts, next, err := s.TransferService.SearchTransfers(r.Context(), tenantFrom(r.Context()), q, page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, searchPage{Data: nonNil(ts), HasMore: next != "", NextCursor: next})
}

// transferQueryFrom reads the search's filters from the query string.
func transferQueryFrom(r *http.Request) (holdfast.TransferQuery, error) {
	v := r.URL.Query()
	q := holdfast.TransferQuery{AccountID: v.Get("account_id"), Status: v.Get("status")}
	for _, p := range []struct {
		name string
		dst  **time.Time
	}{{"created[gte]", &q.CreatedGTE}, {"created[lt]", &q.CreatedLT}} {
		if !v.Has(p.name) {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v.Get(p.name))
		if err != nil {
			return q, holdfast.Errorf(holdfast.EINVALID, "%s must be an RFC 3339 time, such as 2026-01-31T00:00:00Z", p.name)
		}
		*p.dst = &t
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"amount[gte]", &q.AmountGTE}, {"amount[lte]", &q.AmountLTE}} {
		if !v.Has(p.name) {
			continue
		}
		n, err := strconv.ParseInt(v.Get(p.name), 10, 64)
		if err != nil {
			return q, holdfast.Errorf(holdfast.EINVALID, "%s must be a whole number of minor units", p.name)
		}
		*p.dst = &n
	}
	for name, values := range v {
		if key, ok := strings.CutPrefix(name, "metadata["); ok && strings.HasSuffix(key, "]") {
			if q.Metadata == nil {
				q.Metadata = map[string]string{}
			}
			q.Metadata[strings.TrimSuffix(key, "]")] = values[0]
		}
	}
	return q, nil
}

// metadataPatch is the body of PATCH /v1/accounts/{id} and
// /v1/transfers/{id}: keys to set, and keys set to null to remove.
type metadataPatch struct {
	Metadata holdfast.MetadataPatch `json:"metadata"`
}

func (s *Server) handlePatchTransfer(w http.ResponseWriter, r *http.Request) {
	s.patchMetadata(w, r, func(ctx context.Context, tenantID, id string, p holdfast.MetadataPatch) (any, error) {
		return s.TransferService.UpdateTransferMetadata(ctx, tenantID, id, p)
	})
}

func (s *Server) handlePatchAccount(w http.ResponseWriter, r *http.Request) {
	s.patchMetadata(w, r, func(ctx context.Context, tenantID, id string, p holdfast.MetadataPatch) (any, error) {
		return s.AccountService.UpdateAccountMetadata(ctx, tenantID, id, p)
	})
}

// patchMetadata answers a PATCH of {id}'s metadata with what update returns.
func (s *Server) patchMetadata(w http.ResponseWriter, r *http.Request,
	update func(ctx context.Context, tenantID, id string, p holdfast.MetadataPatch) (any, error)) {
	var in metadataPatch
	if err := decode(r, &in); err != nil {
		s.Error(w, r, err)
		return
	}
	v, err := update(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), in.Metadata)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, v)
}
