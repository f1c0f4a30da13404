package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

func fingerprint(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func TestIdempotency_ClaimCompleteReplay(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	svc := postgres.NewIdempotencyService(db, 0)
	ctx := context.Background()

	claim, stored, err := svc.Claim(ctx, tenant, "k1", fingerprint("a"))
	if err != nil || claim == nil || stored != nil {
		t.Fatalf("first claim = %v, %v, %v", claim, stored, err)
	}
	if _, _, err := svc.Claim(ctx, tenant, "k1", fingerprint("a")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		t.Fatalf("claim while held: err = %v, want %s", err, holdfast.EIDEMPOTENCYINUSE)
	}
	if _, _, err := svc.Claim(ctx, tenant, "k1", fingerprint("b")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYREUSED) {
		t.Fatalf("claim with another request: err = %v, want %s", err, holdfast.EIDEMPOTENCYREUSED)
	}
	resp := holdfast.Response{Status: 422, ContentType: "application/problem+json", Body: []byte(`{"x":1}`)}
	if err := svc.Complete(ctx, claim, resp); err != nil {
		t.Fatal(err)
	}
	again, stored, err := svc.Claim(ctx, tenant, "k1", fingerprint("a"))
	if err != nil || again != nil || stored == nil {
		t.Fatalf("replay = %v, %v, %v", again, stored, err)
	}
	if stored.Status != resp.Status || stored.ContentType != resp.ContentType || !bytes.Equal(stored.Body, resp.Body) {
		t.Fatalf("replayed %+v, want %+v", stored, resp)
	}
	if _, _, err := svc.Claim(ctx, tenant, "k1", fingerprint("b")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYREUSED) {
		t.Fatalf("completed key, another request: err = %v", err)
	}
	// Keys are per tenant.
	other := MustTenant(t, db)
	if c, _, err := svc.Claim(ctx, other, "k1", fingerprint("b")); err != nil || c == nil {
		t.Fatalf("same key in another tenant: %v, %v", c, err)
	}
}

func TestIdempotency_ReleaseLetsRetry(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	svc := postgres.NewIdempotencyService(db, 0)
	ctx := context.Background()
	claim, _, err := svc.Claim(ctx, tenant, "k", fingerprint("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Release(ctx, claim); err != nil {
		t.Fatal(err)
	}
	// A released key can be used again, even with a corrected request.
	if c, _, err := svc.Claim(ctx, tenant, "k", fingerprint("corrected")); err != nil || c == nil {
		t.Fatalf("claim after release: %v, %v", c, err)
	}
}

// TestIdempotency_TakeoverAfterCrash: a claim whose request died is taken
// over once its lock times out, and the dead request can no longer apply.
func TestIdempotency_TakeoverAfterCrash(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		svc := postgres.NewIdempotencyService(l.db, time.Minute)
		ctx := context.Background()
		a := MustAccount(t, l.db, l.tenant, "USD", true)
		b := MustAccount(t, l.db, l.tenant, "USD", true)

		dead, _, err := svc.Claim(ctx, l.tenant, "k", fingerprint("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.Claim(ctx, l.tenant, "k", fingerprint("x")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
			t.Fatalf("before the lock timeout: err = %v", err)
		}
		// The holder crashed two minutes ago.
		if _, err := l.db.Pool.Exec(ctx, "UPDATE idempotency_keys SET locked_at = now() - interval '2 minutes' WHERE tenant_id = $1", l.tenant); err != nil {
			t.Fatal(err)
		}
		heir, _, err := svc.Claim(ctx, l.tenant, "k", fingerprint("x"))
		if err != nil || heir == nil || heir.Token == dead.Token {
			t.Fatalf("takeover = %v, %v", heir, err)
		}

		in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 10, Currency: "USD"}}
		render := func(any) (holdfast.Response, error) { return holdfast.Response{Status: 201, Body: []byte("ok")}, nil }
		dead.Render, heir.Render = render, render
		if _, err := l.transfers.CreateTransfers(holdfast.NewContextWithClaim(ctx, dead), l.tenant, in, false); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
			t.Fatalf("the dead request applying after takeover: err = %v", err)
		}
		if _, err := l.transfers.CreateTransfers(holdfast.NewContextWithClaim(ctx, heir), l.tenant, in, false); err != nil {
			t.Fatal(err)
		}
		if heir.Stored() == nil || string(heir.Stored().Body) != "ok" {
			t.Fatalf("heir's stored response = %v", heir.Stored())
		}
		if got := l.balance(t, b); got != 10 {
			t.Fatalf("balance = %d, want 10 (applied once)", got)
		}
		_, stored, err := svc.Claim(ctx, l.tenant, "k", fingerprint("x"))
		if err != nil || stored == nil || string(stored.Body) != "ok" {
			t.Fatalf("replay after takeover = %v, %v", stored, err)
		}
	})
}

func TestReaper_DeletesOnlyExpiredKeys(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	svc := postgres.NewIdempotencyService(db, 0)
	ctx := context.Background()
	for _, k := range []string{"old-done", "old-held", "new"} {
		c, _, err := svc.Claim(ctx, tenant, k, fingerprint(k))
		if err != nil {
			t.Fatal(err)
		}
		if k != "old-held" {
			if err := svc.Complete(ctx, c, holdfast.Response{Status: 201}); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Pool.Exec(ctx, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key LIKE 'old-%'")
	n, err := postgres.NewReaper(db, postgres.ReaperConfig{}).Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep deleted %d, %v; want 1 (the old completed key; a live claim is kept)", n, err)
	}
	var keys []string
	rows, _ := db.Pool.Query(ctx, "SELECT key FROM idempotency_keys ORDER BY key")
	for rows.Next() {
		var k string
		rows.Scan(&k)
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] != "new" || keys[1] != "old-held" {
		t.Fatalf("keys left = %v", keys)
	}
}
