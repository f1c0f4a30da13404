package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// countActiveKeys returns the tenant's unrevoked keys, straight from the database.
func countActiveKeys(tb testing.TB, db *postgres.DB, tenant string) int {
	tb.Helper()
	var n int
	err := db.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL", tenant).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestAPIKeys_CapHoldsUnderConcurrentCreation: many concurrent key
// creations for one tenant through two services on one database (two
// replicas) never take it past its cap of active keys; the ones past it
// fail with EKEYLIMIT and create nothing. A revoked key makes room again.
func TestAPIKeys_CapHoldsUnderConcurrentCreation(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	ctx := context.Background()
	var replicas []*postgres.TenantService
	for range 2 {
		s, err := postgres.NewTenantServiceWith(db, postgres.TenantConfig{MaxActiveKeys: 5})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, s)
	}
	tenant, _, err := replicas[0].CreateTenant(ctx, holdfast.TenantCreate{Name: t.Name()}, nil) // its first key
	if err != nil {
		t.Fatal(err)
	}

	const attempts = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created []*holdfast.APIKey
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := replicas[i%2].CreateAPIKey(ctx, tenant.ID, nil)
			if err != nil && !holdfast.IsCode(err, holdfast.EKEYLIMIT) {
				t.Errorf("create key: %v, want success or %s", err, holdfast.EKEYLIMIT)
			}
			if err == nil {
				mu.Lock()
				created = append(created, k)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(created) != 4 {
		t.Fatalf("%d of %d concurrent creations succeeded for a tenant with 1 key and a cap of 5, want 4", len(created), attempts)
	}
	if n := countActiveKeys(t, db, tenant.ID); n != 5 {
		t.Fatalf("%d active keys in the database, want the cap of 5", n)
	}

	if err := replicas[1].RevokeAPIKey(ctx, tenant.ID, created[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := replicas[0].CreateAPIKey(ctx, tenant.ID, nil); err != nil {
		t.Fatalf("create a key after a revocation made room: %v", err)
	}
	if _, err := replicas[1].CreateAPIKey(ctx, tenant.ID, nil); !holdfast.IsCode(err, holdfast.EKEYLIMIT) {
		t.Fatalf("create a key past the cap: %v, want %s", err, holdfast.EKEYLIMIT)
	}
}

// TestAPIKeys_CapDefaultsTo100: a tenant may hold 100 active keys by
// default, and not 101.
func TestAPIKeys_CapDefaultsTo100(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	ctx := context.Background()
	s := postgres.NewTenantService(db)
	tenant, _, err := s.CreateTenant(ctx, holdfast.TenantCreate{Name: t.Name()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 99 {
		if _, err := s.CreateAPIKey(ctx, tenant.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateAPIKey(ctx, tenant.ID, nil); !holdfast.IsCode(err, holdfast.EKEYLIMIT) {
		t.Fatalf("the 101st key: %v, want %s", err, holdfast.EKEYLIMIT)
	}
	if n := countActiveKeys(t, db, tenant.ID); n != 100 {
		t.Fatalf("%d active keys, want 100", n)
	}
}
