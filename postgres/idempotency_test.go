package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
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

// TestIdempotency_TakeoverAfterCrash: a key claimed up front whose request
// died is taken over once its lock times out, and the dead request can no
// longer complete it.
func TestIdempotency_TakeoverAfterCrash(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	svc := postgres.NewIdempotencyService(db, time.Minute)
	accounts := postgres.NewAccountService(db)
	ctx := context.Background()

	dead, _, err := svc.Claim(ctx, tenant, "k", fingerprint("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Claim(ctx, tenant, "k", fingerprint("x")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		t.Fatalf("before the lock timeout: err = %v", err)
	}
	// The holder crashed two minutes ago.
	if _, err := db.Pool.Exec(ctx, "UPDATE idempotency_keys SET locked_at = now() - interval '2 minutes' WHERE tenant_id = $1", tenant); err != nil {
		t.Fatal(err)
	}
	heir, _, err := svc.Claim(ctx, tenant, "k", fingerprint("x"))
	if err != nil || heir == nil || heir.Token == dead.Token {
		t.Fatalf("takeover = %v, %v", heir, err)
	}

	render := func(any, error) (holdfast.Response, bool) {
		return holdfast.Response{Status: 201, Body: []byte("ok")}, true
	}
	dead.Render, heir.Render = render, render
	in := holdfast.AccountCreate{Currency: "USD"}
	if _, err := accounts.CreateAccount(holdfast.NewContextWithClaim(ctx, dead), tenant, in); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		t.Fatalf("the dead request completing after takeover: err = %v", err)
	}
	if _, err := accounts.CreateAccount(holdfast.NewContextWithClaim(ctx, heir), tenant, in); err != nil {
		t.Fatal(err)
	}
	if heir.Stored() == nil || string(heir.Stored().Body) != "ok" {
		t.Fatalf("heir's stored response = %v", heir.Stored())
	}
	list, _, err := accounts.ListAccounts(ctx, tenant, holdfast.Page{})
	if err != nil || len(list) != 1 {
		t.Fatalf("accounts = %d, %v; want exactly 1 (the dead request's write rolled back)", len(list), err)
	}
	_, stored, err := svc.Claim(ctx, tenant, "k", fingerprint("x"))
	if err != nil || stored == nil || string(stored.Body) != "ok" {
		t.Fatalf("replay after takeover = %v, %v", stored, err)
	}
}

// TestTransfer_KeyClaimedInBatch: a transfer claims its key in its own
// transaction: it runs once, a retry replays, another request under the key
// is refused, and concurrent duplicates never run twice.
func TestTransfer_KeyClaimedInBatch(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, l *ledger) {
		ctx := context.Background()
		a := MustAccount(t, l.db, l.tenant, "USD", true)
		b := MustAccount(t, l.db, l.tenant, "USD", false)
		claimed := func(fp string) (*holdfast.IdempotencyClaim, context.Context) {
			c := &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: "pay-1", Fingerprint: fingerprint(fp)}
			c.Render = func(result any, err error) (holdfast.Response, bool) {
				if err != nil {
					return holdfast.Response{Status: 422, Body: []byte(holdfast.ErrorCode(err))}, true
				}
				return holdfast.Response{Status: 201, Body: []byte(result.([]*holdfast.Transfer)[0].ID)}, true
			}
			return c, holdfast.NewContextWithClaim(ctx, c)
		}
		in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 5, Currency: "USD"}}

		var wg sync.WaitGroup
		claims := make([]*holdfast.IdempotencyClaim, 20)
		for i := range claims {
			c, cctx := claimed("body")
			claims[i] = c
			wg.Go(func() { l.transfers.CreateTransfers(cctx, l.tenant, in, false) })
		}
		wg.Wait()
		var ran, replayed int
		for _, c := range claims {
			switch {
			case c.Stored() != nil:
				ran++
			case c.Replayed() != nil:
				replayed++
			}
		}
		if ran != 1 || l.balance(t, b) != 5 {
			t.Fatalf("%d of 20 concurrent requests ran (balance %d); want exactly 1", ran, l.balance(t, b))
		}
		t.Logf("20 concurrent: 1 ran, %d replayed, %d told in progress", replayed, 19-replayed)

		c, cctx := claimed("body")
		if _, err := l.transfers.CreateTransfers(cctx, l.tenant, in, false); err != nil || c.Replayed() == nil {
			t.Fatalf("retry: err %v, replayed %v", err, c.Replayed())
		}
		if _, cctx := claimed("another body"); true {
			if _, err := l.transfers.CreateTransfers(cctx, l.tenant, in, false); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYREUSED) {
				t.Fatalf("another request under the key: err = %v", err)
			}
		}
		if l.balance(t, b) != 5 {
			t.Fatalf("balance %d after retries, want 5", l.balance(t, b))
		}
		// A final failure is stored and replayed too.
		fail := []holdfast.TransferCreate{{DebitAccountID: b.ID, CreditAccountID: a.ID, Amount: 500, Currency: "USD"}}
		c1 := &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: "pay-2", Fingerprint: fingerprint("f"), Render: claims[0].Render}
		if _, err := l.transfers.CreateTransfers(holdfast.NewContextWithClaim(ctx, c1), l.tenant, fail, false); !holdfast.IsCode(err, holdfast.EINSUFFICIENT) || c1.Stored() == nil {
			t.Fatalf("insufficient funds: err %v, stored %v", err, c1.Stored())
		}
		c2 := &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: "pay-2", Fingerprint: fingerprint("f"), Render: claims[0].Render}
		l.transfers.CreateTransfers(holdfast.NewContextWithClaim(ctx, c2), l.tenant, fail, false)
		if c2.Replayed() == nil || string(c2.Replayed().Body) != holdfast.EINSUFFICIENT {
			t.Fatalf("replay of a stored failure = %v", c2.Replayed())
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
