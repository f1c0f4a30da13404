package postgres_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/postgres"
)

// ledgerClock sets db's clock to a start plus the seconds it holds.
func ledgerClock(db *postgres.DB) (*atomic.Int64, func(int64) time.Time) {
	var clock atomic.Int64
	start := time.Now().UTC().Truncate(time.Second)
	at := func(s int64) time.Time { return start.Add(time.Duration(s) * time.Second) }
	db.Now = func() time.Time { return at(clock.Load()) }
	return &clock, at
}

var (
	keyA = strings.Repeat("a", 64)
	keyB = strings.Repeat("b", 64)
)

// A claim that commits while a sweep holds the row waits for the sweep,
// then inserts the row anew: its put will find the object gone and write
// it again, and the next sweep sees a young claim.
func TestBlobLedger_ClaimDuringADropWaitsAndClaimsAnew(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	l := postgres.NewBlobLedger(db)
	clock, at := ledgerClock(db)
	if err := l.ClaimBlobs(ctx, []string{keyA, keyB, keyA}); err != nil {
		t.Fatal(err)
	}
	clock.Store(100)
	claimed := make(chan error, 1)
	dropped, err := l.DropBlob(ctx, keyA, at(50), func(ctx context.Context) error {
		go func() { claimed <- l.ClaimBlobs(ctx, []string{keyA}) }()
		// The claim is blocked on the row lock this transaction holds.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			n := dbtest.MustCount(t, db, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO blobs%'`)
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Error("the claim never waited for the drop's lock")
				break
			}
		}
		select {
		case err := <-claimed:
			t.Errorf("the claim returned (%v) while the drop held the row", err)
		default:
		}
		return nil
	})
	if err != nil || !dropped {
		t.Fatalf("DropBlob = %v, %v; want dropped", dropped, err)
	}
	if err := <-claimed; err != nil {
		t.Fatal(err)
	}
	stale, err := l.StaleBlobs(ctx, at(50), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0] != keyB {
		t.Fatalf("stale blobs %v, want only %s: the claim during the drop is young", stale, keyB[:8])
	}
	var got time.Time
	if err := db.Pool.QueryRow(ctx, "SELECT claimed_at FROM blobs WHERE key = $1", keyA).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(at(100)) {
		t.Fatalf("claimed_at %v, want %v", got, at(100))
	}
}

// A row claimed again since the cutoff is not dropped, and drop is not
// called; a claim never moves claimed_at back.
func TestBlobLedger_DropSkipsARowClaimedSinceTheCutoff(t *testing.T) {
	db := MustOpenDB(t)
	ctx := context.Background()
	l := postgres.NewBlobLedger(db)
	clock, at := ledgerClock(db)
	clock.Store(10)
	if err := l.ClaimBlobs(ctx, []string{keyA}); err != nil {
		t.Fatal(err)
	}
	clock.Store(0) // a replica whose clock is behind
	if err := l.ClaimBlobs(ctx, []string{keyA}); err != nil {
		t.Fatal(err)
	}
	dropped, err := l.DropBlob(ctx, keyA, at(5), func(context.Context) error {
		t.Error("drop called for a young claim")
		return nil
	})
	if err != nil || dropped {
		t.Fatalf("DropBlob = %v, %v; want not dropped", dropped, err)
	}
	if n := dbtest.MustCount(t, db, "SELECT count(*) FROM blobs"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	// An unknown key is no error, and a malformed one is refused.
	if dropped, err := l.DropBlob(ctx, keyB, at(5), func(context.Context) error { return nil }); err != nil || dropped {
		t.Fatalf("DropBlob(unknown) = %v, %v", dropped, err)
	}
	if err := l.ClaimBlobs(ctx, []string{"../etc"}); err == nil {
		t.Fatal("claimed a malformed key")
	}
}
