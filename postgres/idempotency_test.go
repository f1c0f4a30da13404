package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

func fingerprint(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
	claim.RequestID = "req-1"
	o, err := holdfast.NewOutcome(claim.RequestID, nil, &holdfast.Error{Code: holdfast.ENOTFOUND, Message: "no such group", Extensions: map[string]any{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Complete(ctx, claim, o); err != nil {
		t.Fatal(err)
	}
	again, stored, err := svc.Claim(ctx, tenant, "k1", fingerprint("a"))
	if err != nil || again != nil || stored == nil {
		t.Fatalf("replay = %v, %v, %v", again, stored, err)
	}
	if want, got := mustJSON(t, o), mustJSON(t, stored); !bytes.Equal(got, want) {
		t.Fatalf("replayed %s, want %s", got, want)
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

	in := holdfast.AccountCreate{Currency: "USD"}
	if _, err := accounts.CreateAccount(ctx, tenant, in, dead); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		t.Fatalf("the dead request completing after takeover: err = %v", err)
	}
	created, err := accounts.CreateAccount(ctx, tenant, in, heir)
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := accounts.ListAccounts(ctx, tenant, holdfast.Page{})
	if err != nil || len(list) != 1 {
		t.Fatalf("accounts = %d, %v; want exactly 1 (the dead request's write rolled back)", len(list), err)
	}
	_, stored, err := svc.Claim(ctx, tenant, "k", fingerprint("x"))
	var replayed holdfast.Account
	if err != nil || stored == nil || stored.Decode(&replayed) != nil || replayed.ID != created.ID {
		t.Fatalf("replay after takeover = %+v, %v; want the heir's account %s", stored, err, created.ID)
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
		claim := func(key, fp string) *holdfast.IdempotencyClaim {
			return &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: key, Fingerprint: fingerprint(fp), RequestID: "req-" + fp}
		}
		in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 5, Currency: "USD"}}
		create := func(c *holdfast.IdempotencyClaim, in []holdfast.TransferCreate) ([]*holdfast.Transfer, *holdfast.Outcome, error) {
			return l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: in, Idempotency: c})
		}

		var mu sync.Mutex
		var wg sync.WaitGroup
		var ran, replayed int
		var id string
		for range 20 {
			wg.Go(func() {
				out, o, err := create(claim("pay-1", "body"), in)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && o == nil:
					ran++
					id = out[0].ID
				case o != nil:
					replayed++
				}
			})
		}
		wg.Wait()
		if ran != 1 || l.balance(t, b) != 5 {
			t.Fatalf("%d of 20 concurrent requests ran (balance %d); want exactly 1", ran, l.balance(t, b))
		}
		t.Logf("20 concurrent: 1 ran, %d replayed, %d told in progress", replayed, 19-replayed)

		var first []*holdfast.Transfer
		if _, o, err := create(claim("pay-1", "body"), in); err != nil || o == nil || o.Decode(&first) != nil || first[0].ID != id {
			t.Fatalf("retry: err %v, replayed %+v; want the transfer %s", err, o, id)
		}
		if _, _, err := create(claim("pay-1", "another body"), in); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYREUSED) {
			t.Fatalf("another request under the key: err = %v", err)
		}
		if l.balance(t, b) != 5 {
			t.Fatalf("balance %d after retries, want 5", l.balance(t, b))
		}
		// A final failure is stored and replayed too, with the first request's id.
		fail := []holdfast.TransferCreate{{DebitAccountID: b.ID, CreditAccountID: a.ID, Amount: 500, Currency: "USD"}}
		if _, o, err := create(claim("pay-2", "f"), fail); !holdfast.IsCode(err, holdfast.EINSUFFICIENT) || o != nil {
			t.Fatalf("insufficient funds: err %v, replayed %+v", err, o)
		}
		retry := claim("pay-2", "f")
		retry.RequestID = "req-retry"
		if _, o, err := create(retry, fail); err != nil || o == nil || o.Err == nil || o.Err.Code != holdfast.EINSUFFICIENT || o.RequestID != "req-f" {
			t.Fatalf("replay of a stored failure = %+v, %v", o, err)
		}
	})
}
