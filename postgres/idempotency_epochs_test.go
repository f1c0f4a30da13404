package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// rotator returns a KeyRotator whose every pass starts a new epoch.
func rotator(t *testing.T, db *postgres.DB) *postgres.KeyRotator {
	t.Helper()
	r, err := postgres.NewKeyRotator(db, postgres.KeyRotatorConfig{Period: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rotate(t *testing.T, r *postgres.KeyRotator) postgres.RotatePass {
	t.Helper()
	p, err := r.Rotate(context.Background())
	if err != nil || p.Skipped {
		t.Fatalf("rotate: %+v, %v", p, err)
	}
	return p
}

func partitionExists(t *testing.T, db *postgres.DB, epoch int64) bool {
	t.Helper()
	var ok bool
	err := db.Pool.QueryRow(context.Background(),
		"SELECT to_regclass('idempotency_keys_e' || $1::bigint) IS NOT NULL", epoch).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A key made just before a new epoch starts lives in the old epoch's
// partition: a retry after the boundary still replays it, another request
// under it is still refused, and a claim still held is still in progress.
func TestKeyRotator_RetryAcrossABoundaryReplays(t *testing.T) {
	t.Parallel()
	l := setup(t, true)
	ctx := context.Background()
	svc := postgres.NewIdempotencyService(l.db, 0)
	a := MustAccount(t, l.db, l.tenant, "USD", true)
	b := MustAccount(t, l.db, l.tenant, "USD", false)
	in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 5, Currency: "USD"}}
	pay := func(key, body string) ([]*holdfast.Transfer, *holdfast.Outcome, error) {
		c := &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: key, Fingerprint: fingerprint(body), RequestID: "req-" + body}
		return l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: in, Idempotency: c})
	}

	first, _, err := pay("pay", "body")
	if err != nil {
		t.Fatal(err)
	}
	held, _, err := svc.Claim(ctx, l.tenant, "held", fingerprint("h"))
	if err != nil {
		t.Fatal(err)
	}
	done, _, err := svc.Claim(ctx, l.tenant, "done", fingerprint("d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Complete(ctx, done, &holdfast.Outcome{Result: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	r := rotator(t, l.db)
	before := rotate(t, r).Epoch
	if p := rotate(t, r); !p.Started || p.Epoch != before+1 {
		t.Fatalf("second pass = %+v; want epoch %d started", p, before+1)
	}

	var replayed []*holdfast.Transfer
	if _, o, err := pay("pay", "body"); err != nil || o == nil || o.Decode(&replayed) != nil || replayed[0].ID != first[0].ID {
		t.Fatalf("transfer retry across the boundary: %+v, %v; want a replay of %s", o, err, first[0].ID)
	}
	if _, _, err := pay("pay", "another body"); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYREUSED) {
		t.Fatalf("another transfer under the key: err = %v", err)
	}
	if c, o, err := svc.Claim(ctx, l.tenant, "done", fingerprint("d")); err != nil || c != nil || o == nil {
		t.Fatalf("claim retry across the boundary = %v, %v, %v; want a replay", c, o, err)
	}
	if _, _, err := svc.Claim(ctx, l.tenant, "held", fingerprint("h")); !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		t.Fatalf("held key across the boundary: err = %v", err)
	}
	if err := svc.Complete(ctx, held, &holdfast.Outcome{Result: []byte(`{}`)}); err != nil {
		t.Fatalf("complete a claim made in the epoch before: %v", err)
	}
	if l.balance(t, b) != 5 {
		t.Fatalf("balance %d; want 5 (one transfer)", l.balance(t, b))
	}
}

// A partition is dropped whole once its epoch ended more than the
// retention ago, and not before: its keys are then free again.
func TestKeyRotator_DropsAPartitionOnlyPastRetention(t *testing.T) {
	t.Parallel()
	db := MustOpenDB(t)
	tenant := MustTenant(t, db)
	ctx := context.Background()
	svc := postgres.NewIdempotencyService(db, 0)
	claim := func(key string) (*holdfast.IdempotencyClaim, *holdfast.Outcome) {
		t.Helper()
		c, o, err := svc.Claim(ctx, tenant, key, fingerprint(key))
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			if err := svc.Complete(ctx, c, &holdfast.Outcome{Result: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
		return c, o
	}
	r := rotator(t, db)
	claim("old")
	old := rotate(t, r).Epoch - 1
	claim("young")
	// Both epochs ended less than the retention ago.
	if p := rotate(t, r); len(p.Dropped) != 0 || !partitionExists(t, db, old) {
		t.Fatalf("pass within retention dropped %v", p.Dropped)
	}
	if _, o := claim("old"); o == nil {
		t.Fatal("a key within retention was forgotten")
	}
	// Move every epoch but the current one 25 hours into the past: the
	// epoch after old started then, so old ended past the retention.
	if _, err := db.Pool.Exec(ctx, `UPDATE idempotency_epochs SET started_at = started_at - interval '25 hours'
		WHERE epoch < (SELECT max(epoch) FROM idempotency_epochs)`); err != nil {
		t.Fatal(err)
	}
	p := rotate(t, r)
	if !slices.Contains(p.Dropped, old) || partitionExists(t, db, old) {
		t.Fatalf("pass past retention dropped %v; want epoch %d among them", p.Dropped, old)
	}
	if _, o := claim("young"); o == nil {
		t.Fatal("a key whose epoch ended within retention was dropped")
	}
	if c, _ := claim("old"); c == nil {
		t.Fatal("a key past retention is still stored")
	}
	if !partitionExists(t, db, p.Epoch+1) || !partitionExists(t, db, p.Epoch+2) {
		t.Fatalf("the partitions after epoch %d are not created ahead", p.Epoch)
	}
}

// Rotation under concurrent writes loses no key: writers post keyed
// transfers through the group commit and claim keys up front, every key
// from every writer at once, while passes start a new epoch every 40 ms.
// Every acknowledged key is found, once, and no key's request ran twice.
// (Without the epoch lock two writers straddling a boundary insert one key
// into two epochs, and this test sees its two transfers. Passes pause
// between them because every epoch within the retention is a partition
// each lookup probes: hundreds would only make the test slow.)
func TestKeyRotator_RotationUnderConcurrentWritesLosesNoKey(t *testing.T) {
	t.Parallel()
	l := setup(t, true)
	ctx := context.Background()
	svc := postgres.NewIdempotencyService(l.db, 0)
	a := MustAccount(t, l.db, l.tenant, "USD", true)
	b := MustAccount(t, l.db, l.tenant, "USD", false)
	in := []holdfast.TransferCreate{{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 1, Currency: "USD"}}
	const writers, keys = 8, 200

	stop := make(chan struct{})
	var epochs atomic.Int64
	rotated := make(chan error, 1)
	go func() {
		r := rotator(t, l.db)
		for {
			select {
			case <-stop:
				rotated <- nil
				return
			default:
			}
			p, err := r.Rotate(ctx)
			if err != nil {
				rotated <- err
				return
			}
			if p.Started {
				epochs.Add(1)
			}
			time.Sleep(40 * time.Millisecond)
		}
	}()

	var mu sync.Mutex
	ids := map[string]string{} // the transfer each key's acknowledged answers name
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range keys {
				k := fmt.Sprintf("t%d", i) // every writer races on every key, at the same time
				c := &holdfast.IdempotencyClaim{TenantID: l.tenant, Key: k, Fingerprint: fingerprint(k), RequestID: k}
				out, o, err := l.transfers.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: l.tenant, Transfers: in, Idempotency: c})
				var got []*holdfast.Transfer
				switch {
				case holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE):
					continue
				case err != nil:
					t.Errorf("transfer %s: %v", k, err)
					continue
				case o != nil:
					if err := o.Decode(&got); err != nil {
						t.Errorf("replay of %s: %v", k, err)
						continue
					}
				default:
					got = out
				}
				mu.Lock()
				if prev, ok := ids[k]; ok && prev != got[0].ID {
					t.Errorf("key %s answered with transfers %s and %s", k, prev, got[0].ID)
				}
				ids[k] = got[0].ID
				mu.Unlock()

				ck := fmt.Sprintf("c%d", i)
				cl, _, err := svc.Claim(ctx, l.tenant, ck, fingerprint(ck))
				if err != nil || cl == nil {
					continue // replayed, or held by another writer
				}
				if err := svc.Complete(ctx, cl, &holdfast.Outcome{Result: []byte(`{}`)}); err != nil {
					t.Errorf("complete %s: %v", ck, err)
					continue
				}
				mu.Lock()
				claimed[ck]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-rotated; err != nil {
		t.Fatalf("rotate under writes: %v", err)
	}
	if epochs.Load() < 3 {
		t.Fatalf("only %d epochs started during the writes; the test did not rotate", epochs.Load())
	}
	for k, n := range claimed {
		if n != 1 {
			t.Errorf("key %s was claimed and completed %d times", k, n)
		}
	}
	var rows, distinct, transfers int
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT key) FROM idempotency_keys WHERE tenant_id = $1`,
		l.tenant).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(*) FROM transfers WHERE tenant_id = $1`, l.tenant).Scan(&transfers); err != nil {
		t.Fatal(err)
	}
	if rows != distinct || rows != len(ids)+len(claimed) {
		t.Fatalf("%d key rows, %d distinct; want one row for each of the %d acknowledged keys", rows, distinct, len(ids)+len(claimed))
	}
	if transfers != len(ids) || l.balance(t, b) != int64(len(ids)) {
		t.Fatalf("%d transfers, balance %d; want one for each of the %d keys", transfers, l.balance(t, b), len(ids))
	}
	for k, id := range ids {
		if _, err := l.transfers.FindTransfer(ctx, l.tenant, id); err != nil {
			t.Errorf("key %s acknowledged transfer %s: %v", k, id, err)
		}
	}
	t.Logf("%d epochs started under %d writers; %d transfer keys, %d claimed keys", epochs.Load(), writers, len(ids), len(claimed))
}
