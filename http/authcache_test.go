package http

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// countingTenants counts the lookups that reach the database.
type countingTenants struct {
	holdfast.TenantService
	lookups atomic.Int64
}

// CountingTenants is countingTenants for the package's external tests.
type CountingTenants = countingTenants

// Lookups returns the lookups that reached the database.
func (c *countingTenants) Lookups() *atomic.Int64 { return &c.lookups }

func (c *countingTenants) Authenticate(ctx context.Context, secret string) (string, error) {
	c.lookups.Add(1)
	return c.TenantService.Authenticate(ctx, secret)
}

// authenticate returns secret's tenant from the cache, or else from the
// database, as requireTenant does.
func (c *authCache) authenticate(ctx context.Context, svc holdfast.TenantService, secret string) (string, error) {
	if tenant, known := c.cached(secret); known {
		if tenant == "" {
			return "", errUnknownKey
		}
		return tenant, nil
	}
	return c.verify(ctx, svc, secret)
}

// TestAuthCache: a known key and an unknown one are each looked up in the
// database once per TTL, however often they are used; the unknown one is
// refused with EUNAUTHORIZED every time; a key revoked (its tenant
// forgotten) is looked up again and refused.
func TestAuthCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := postgres.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	svc := &countingTenants{TenantService: postgres.NewTenantService(db)}
	tenant, key, err := svc.CreateTenant(ctx, holdfast.TenantCreate{Name: "cache"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &authCache{ttl: time.Hour}
	for range 100 {
		if got, err := c.authenticate(ctx, svc, key.Secret); err != nil || got != tenant.ID {
			t.Fatalf("known key: %q %v", got, err)
		}
		if _, err := c.authenticate(ctx, svc, "hf_not_a_key"); holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
			t.Fatalf("unknown key: %v, want EUNAUTHORIZED", err)
		}
	}
	if n := svc.lookups.Load(); n != 2 {
		t.Fatalf("%d database lookups for 200 requests with 2 keys, want 2", n)
	}

	if err := svc.RevokeAPIKey(ctx, tenant.ID, key.ID); err != nil {
		t.Fatal(err)
	}
	c.forgetTenant(tenant.ID)
	if _, err := c.authenticate(ctx, svc, key.Secret); holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
		t.Fatalf("revoked key: %v, want EUNAUTHORIZED", err)
	}
	if n := svc.lookups.Load(); n != 3 {
		t.Fatalf("%d database lookups after the revocation, want 3", n)
	}
}

// A flood of distinct unknown keys never holds more than the cache's bound,
// and a key known before it is still answered right after.
func TestAuthCache_MemoryStaysBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := postgres.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	svc := postgres.NewTenantService(db)
	tenant, key, err := svc.CreateTenant(ctx, holdfast.TenantCreate{Name: "flood"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &authCache{ttl: time.Hour, max: 100}
	for i := range 1000 {
		if _, err := c.authenticate(ctx, svc, fmt.Sprintf("hf_flood_%d", i)); holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
			t.Fatalf("unknown key %d: %v", i, err)
		}
		if n := len(c.m); n > 100 {
			t.Fatalf("the cache holds %d keys after %d distinct ones, want at most 100", n, i+1)
		}
	}
	if got, err := c.authenticate(ctx, svc, key.Secret); err != nil || got != tenant.ID {
		t.Fatalf("known key after the flood: %q %v", got, err)
	}
}
