package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/holdfast/holdfast"
)

// ProblemBase prefixes every problem type; the rest is the error code, so
// types are stable as long as codes are.
const ProblemBase = "https://holdfast.dev/problems/"

// HTTP-only error codes: failures of the request itself, before any service runs.
const (
	ETOOLARGE    = "payload-too-large"
	EMEDIATYPE   = "unsupported-media-type"
	EMETHOD      = "method-not-allowed"
	ETIMEOUT     = "timeout"
	ERATELIMITED = "rate-limited"
	// EAUTHTHROTTLED: the client address failed to authenticate too often.
	EAUTHTHROTTLED = "authentication-throttled"
	// Requests net/http refuses before any handler (see problemListener);
	// its 400s are EINVALID.
	EHEADERSTOOLARGE  = "headers-too-large"
	ETRANSFERENCODING = "unsupported-transfer-encoding"
	EHTTPVERSION      = "unsupported-http-version"
)

// problem is the one table from error code to HTTP status and title.
var problems = map[string]struct {
	status int
	title  string
}{
	holdfast.EINVALID:           {http.StatusBadRequest, "Invalid request"},
	holdfast.EUNAUTHORIZED:      {http.StatusUnauthorized, "Unauthorized"},
	holdfast.ENOTFOUND:          {http.StatusNotFound, "Not found"},
	holdfast.ECONFLICT:          {http.StatusConflict, "Conflict"},
	holdfast.EINSUFFICIENT:      {http.StatusUnprocessableEntity, "Insufficient funds"},
	holdfast.ECURRENCY:          {http.StatusUnprocessableEntity, "Currency mismatch"},
	holdfast.ELIMIT:             {http.StatusUnprocessableEntity, "Balance limit exceeded"},
	holdfast.ETRANSFEREXISTS:    {http.StatusConflict, "Transfer exists with different fields"},
	holdfast.EIDEMPOTENCYINUSE:  {http.StatusConflict, "Idempotency key in use"},
	holdfast.EIDEMPOTENCYREUSED: {http.StatusUnprocessableEntity, "Idempotency key reused"},
	holdfast.EOVERLOADED:        {http.StatusServiceUnavailable, "Overloaded"},
	holdfast.EUNAVAILABLE:       {http.StatusServiceUnavailable, "Store unavailable"},
	holdfast.EOUTCOMEUNKNOWN:    {http.StatusInternalServerError, "Outcome unknown"},
	holdfast.ENOTPENDING:        {http.StatusConflict, "Transfer not pending"},
	holdfast.EALREADYPOSTED:     {http.StatusConflict, "Transfer already posted"},
	holdfast.EALREADYVOIDED:     {http.StatusConflict, "Transfer already voided"},
	holdfast.EEXPIRED:           {http.StatusConflict, "Transfer expired"},
	holdfast.EEXCEEDSPENDING:    {http.StatusUnprocessableEntity, "Exceeds pending amount"},
	holdfast.EMAXBALANCE:        {http.StatusUnprocessableEntity, "Max balance exceeded"},
	holdfast.EIMAGETOOLARGE:     {http.StatusUnprocessableEntity, "Image too large"},
	holdfast.EKEYLIMIT:          {http.StatusConflict, "API key limit reached"},
	holdfast.EQUOTA:             {http.StatusUnprocessableEntity, "Quota exceeded"},
	holdfast.EINTERNAL:          {http.StatusInternalServerError, "Internal error"},
	ETOOLARGE:                   {http.StatusRequestEntityTooLarge, "Payload too large"},
	EMEDIATYPE:                  {http.StatusUnsupportedMediaType, "Unsupported media type"},
	EMETHOD:                     {http.StatusMethodNotAllowed, "Method not allowed"},
	ETIMEOUT:                    {http.StatusServiceUnavailable, "Request timed out"},
	ERATELIMITED:                {http.StatusTooManyRequests, "Too many requests"},
	EAUTHTHROTTLED:              {http.StatusTooManyRequests, "Too many failed authentications"},
	EHEADERSTOOLARGE:            {http.StatusRequestHeaderFieldsTooLarge, "Request header fields too large"},
	ETRANSFERENCODING:           {http.StatusNotImplemented, "Unsupported transfer encoding"},
	EHTTPVERSION:                {http.StatusHTTPVersionNotSupported, "HTTP version not supported"},
	EWEBHOOKSOFF:                {http.StatusNotImplemented, "Webhooks not configured"},
}

// problemFor returns the RFC 9457 problem document and status for err: type,
// title, status, detail, instance and request_id (requestID, the request's
// own, or for a replay the first request's), plus the error's extension
// members (such as the index of a failed linked transfer).
func problemFor(r *http.Request, err error, requestID string) (int, []byte) {
	code := holdfast.ErrorCode(err)
	msg := holdfast.ErrorMessage(err)
	switch {
	case code != holdfast.EINTERNAL:
		// A domain code says what happened, whatever its cause wraps.
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		// A deadline other than the request's: a resource it needed (a
		// database connection within the acquire timeout) was not free in time.
		code, msg = holdfast.EOVERLOADED, "the service is too busy to serve this request now; retry shortly"
	case errors.Is(err, context.DeadlineExceeded):
		code, msg = ETIMEOUT, "the request did not finish within its deadline; retry"
	case errors.Is(err, context.Canceled):
		code, msg = ETIMEOUT, "the request was cancelled"
	}
	p, ok := problems[code]
	if !ok {
		code, p = holdfast.EINTERNAL, problems[holdfast.EINTERNAL]
	}
	doc := map[string]any{}
	var e *holdfast.Error
	if errors.As(err, &e) {
		for k, v := range e.Extensions {
			doc[k] = v
		}
	}
	doc["type"] = ProblemBase + code
	doc["title"] = p.title
	doc["status"] = p.status
	doc["detail"] = msg
	doc["instance"] = r.URL.Path
	if requestID != "" {
		doc["request_id"] = requestID
	}
	b, _ := json.Marshal(doc) // plain values only
	return p.status, append(b, '\n')
}

// Error writes err as application/problem+json. Internal errors are logged
// with the request id; the client sees only a generic message.
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	code := holdfast.ErrorCode(err)
	if code == holdfast.EOUTCOMEUNKNOWN || code == holdfast.EINTERNAL && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		s.logger.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("request_id", requestIDFrom(r.Context())), slog.String("err", err.Error()))
	}
	s.problem(w, r, err, requestIDFrom(r.Context()))
}

// problem writes err as the problem document of the request requestID.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error, requestID string) {
	status, body := problemFor(r, err, requestID)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		markShed(r.Context()) // counted in metrics; a flood of them must not flood the log
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", strconv.Itoa(1))
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
