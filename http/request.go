package http

import (
	"context"
	"net/http"
)

type ctxKey int

const infoKey ctxKey = 0

// requestInfo is a request's state in the middleware: its id, set by
// observe; its tenant, set by authentication; whether overload protection
// shed it. One value in the request's context, filled in as the request
// goes through, instead of a context (and a copy of the request) per
// middleware: a transfer request is the hot path, and each copy is
// garbage (docs/decisions/0011-one-request-state-in-the-context.md).
type requestInfo struct {
	id     string
	tenant string
	shed   bool      // refused by overload protection: logged at debug, a flood of them must stay cheap
	rec    *recorder // the response, as written so far
}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey).(*requestInfo)
	return info
}

// authenticate records that the request is authenticated as tenant. It is
// called before the handlers the request goes on to, which read it.
func authenticate(r *http.Request, tenant string) *http.Request {
	if info := infoFrom(r.Context()); info != nil {
		info.tenant = tenant
		return r
	}
	// Outside observe (a handler tested alone): a context of its own.
	return r.WithContext(context.WithValue(r.Context(), infoKey, &requestInfo{tenant: tenant}))
}

func requestIDFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// tenantFrom returns the authenticated tenant of the request.
func tenantFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.tenant
	}
	return ""
}

// validRequestID accepts a caller's X-Request-Id if it is short and printable.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// statusFrom returns the status the request's response was written with
// so far: 0 before any, or outside observe.
func statusFrom(ctx context.Context) int {
	if info := infoFrom(ctx); info != nil && info.rec != nil {
		return info.rec.status
	}
	return 0
}
