package pglocal

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestStartReplica_FollowsThePrimary(t *testing.T) {
	dir := t.TempDir()
	primary := start(t, filepath.Join(dir, "primary"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pc := connect(t, primary.URL("postgres"))
	if _, err := pc.Exec(ctx, "CREATE TABLE before_copy (n int); INSERT INTO before_copy VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	replica, err := StartReplica(ctx, primary, Config{Dir: filepath.Join(dir, "replica"), Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Stop() })
	rc := connect(t, replica.URL("postgres"))
	var recovering bool
	if err := rc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || !recovering {
		t.Fatalf("replica: pg_is_in_recovery() = %v, %v; want true", recovering, err)
	}
	if _, err := rc.Exec(ctx, "INSERT INTO before_copy VALUES (2)"); err == nil {
		t.Fatal("replica took a write")
	}

	// A row written after the copy arrives by streaming.
	if _, err := pc.Exec(ctx, "INSERT INTO before_copy VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	for {
		var n int
		if err := rc.QueryRow(ctx, "SELECT count(*) FROM before_copy").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica never saw the primary's second row (it has %d rows)", n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
