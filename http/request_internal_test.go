package http

import (
	"context"
	"net/http/httptest"
	"testing"
)

// Authentication records the tenant in the request's state: in place,
// without a new request, when observe has set one up; in a state of its own
// otherwise (a handler served without observe).
func TestAuthenticate_RecordsTheTenant(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/accounts", nil)
	info := &requestInfo{id: "req-1"}
	r = r.WithContext(context.WithValue(r.Context(), infoKey, info))
	if got := authenticate(r, "tenant-a"); got != r {
		t.Error("authenticate copied a request that has a state")
	}
	if info.tenant != "tenant-a" || tenantFrom(r.Context()) != "tenant-a" || requestIDFrom(r.Context()) != "req-1" {
		t.Errorf("state %+v, tenant %q, request id %q; want tenant-a and req-1", *info, tenantFrom(r.Context()), requestIDFrom(r.Context()))
	}

	bare := httptest.NewRequest("GET", "/v1/accounts", nil)
	if tenantFrom(bare.Context()) != "" || requestIDFrom(bare.Context()) != "" {
		t.Fatal("a request without a state has a tenant or a request id")
	}
	if got := authenticate(bare, "tenant-b"); tenantFrom(got.Context()) != "tenant-b" {
		t.Errorf("without observe: tenant %q, want tenant-b", tenantFrom(got.Context()))
	}
}
