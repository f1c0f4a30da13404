package http

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
)

// receiptPath reports whether a request uploads a receipt: its body may be
// up to ReceiptBodyLimit.
func receiptPath(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/transfers/") && strings.HasSuffix(r.URL.Path, "/receipt")
}

// withURLs sets the URL of each variant of a receipt.
func withURLs(rc *holdfast.Receipt) *holdfast.Receipt {
	for name, v := range rc.Variants {
		v.URL = "/v1/receipts/" + rc.ID + "/" + name
		rc.Variants[name] = v
	}
	return rc
}

// handlePutReceipt stores an image for a transfer and queues its processing:
// 202 with the receipt (status queued), or the receipt as it is (200) when
// the same image was uploaded before. The format is sniffed from the bytes
// (JPEG, PNG, WebP; Content-Type is not trusted) and the dimensions read
// from the header before anything is decoded.
func (s *Server) handlePutReceipt(w http.ResponseWriter, r *http.Request) {
	if s.ReceiptService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "receipts are not running in this server"))
		return
	}
	rc, err := s.ReceiptService.PutReceipt(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, media.ErrTooLarge) || errors.As(err, &tooLarge):
		err = holdfast.Errorf(ETOOLARGE, "the image is larger than %d bytes", s.cfg.ReceiptBodyLimit)
	case errors.Is(err, media.ErrFormat):
		err = holdfast.Errorf(EMEDIATYPE, "the image must be JPEG, PNG or WebP (the bytes are checked, not the Content-Type)")
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	status := http.StatusAccepted
	if rc.Status != holdfast.ReceiptQueued {
		status = http.StatusOK // the same image again: nothing new to do
	}
	w.Header().Set("Location", "/v1/receipts/"+rc.ID)
	s.respond(w, r, status, withURLs(rc))
}

func (s *Server) handleGetReceipt(w http.ResponseWriter, r *http.Request) {
	if s.ReceiptService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "receipts are not running in this server"))
		return
	}
	rc, err := s.ReceiptService.FindReceipt(r.Context(), tenantFrom(r.Context()), r.PathValue("id"))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, withURLs(rc))
}

// handleGetReceiptVariant serves a stored rendition, with its content hash
// as ETag (conditional and range requests are honoured).
func (s *Server) handleGetReceiptVariant(w http.ResponseWriter, r *http.Request) {
	if s.ReceiptService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "receipts are not running in this server"))
		return
	}
	f, v, err := s.ReceiptService.OpenVariant(r.Context(), tenantFrom(r.Context()), r.PathValue("id"), r.PathValue("variant"))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", v.ContentType)
	w.Header().Set("ETag", `"`+v.Key+`"`)
	w.Header().Set("Cache-Control", "private, no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, f)
}

func (s *Server) handleListDeadLetters(w http.ResponseWriter, r *http.Request) {
	if s.DeadLetterService == nil {
		s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "receipts are not running in this server"))
		return
	}
	page, err := pageFrom(r)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	list, next, err := s.DeadLetterService.ListDeadLetters(r.Context(), r.URL.Query().Get("tenant"), page)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, struct {
		Data       []*holdfast.DeadLetter `json:"data"`
		NextCursor string                 `json:"next_cursor,omitempty"`
	}{nonNil(list), next})
}

// deadLetterView shows a dead letter redriven.
var deadLetterView = viewOf(http.StatusOK, func(d *holdfast.DeadLetter) any { return d })

func (s *Server) handleRedrive(w http.ResponseWriter, r *http.Request) {
	s.idempotent(w, r, deadLetterView, storedAfterWrite, func(*holdfast.IdempotencyClaim) (any, error) {
		if s.DeadLetterService == nil {
			return nil, holdfast.Errorf(holdfast.EOVERLOADED, "receipts are not running in this server")
		}
		return s.DeadLetterService.Redrive(r.Context(), r.PathValue("id"))
	})
}
