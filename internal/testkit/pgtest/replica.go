package pgtest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/pglocal"
)

// Replicated is a database on a private primary cluster with a streaming
// replica of its own, made by NewReplicated for one test.
type Replicated struct {
	// PrimaryURL and ReplicaURL name the same database on the primary and
	// on the replica, as the superuser.
	PrimaryURL, ReplicaURL string

	primary, replica *pglocal.Cluster
}

// NewReplicated starts a private primary cluster and a streaming replica
// of it (pglocal.StartReplica), creates a database and waits until the
// replica has it. Both clusters are stopped when tb ends. It uses the
// machine's PostgreSQL binaries whatever TEST_DATABASE_URL says, since a
// replica needs a primary it can copy; only the tests that need a replica
// call it, as the pair costs a few seconds to start. It fails tb if either
// cluster cannot start.
func NewReplicated(tb testing.TB) *Replicated {
	tb.Helper()
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(tb.Context(), 2*time.Minute)
	defer cancel()
	primary, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(dir, "primary"), Fast: true, MaxConnections: 100})
	if err != nil {
		tb.Fatalf("pgtest: starting a primary: %v", err)
	}
	tb.Cleanup(func() { primary.Stop() })
	const name = "replicated"
	if err := primary.CreateDatabase(ctx, name); err != nil {
		tb.Fatal(err)
	}
	replica, err := pglocal.StartReplica(ctx, primary, pglocal.Config{Dir: filepath.Join(dir, "replica"), Fast: true, MaxConnections: 100})
	if err != nil {
		tb.Fatalf("pgtest: starting a replica: %v", err)
	}
	tb.Cleanup(func() { replica.Stop() })
	return &Replicated{PrimaryURL: primary.URL(name), ReplicaURL: replica.URL(name), primary: primary, replica: replica}
}

// WaitReplayed waits until the replica has replayed everything the primary
// had written when it was called; it fails tb if that takes over a minute.
func (r *Replicated) WaitReplayed(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	var target string
	if err := queryRow(ctx, r.PrimaryURL, "SELECT pg_current_wal_lsn()::text", &target); err != nil {
		tb.Fatal(err)
	}
	for {
		var done bool
		err := queryRow(ctx, r.ReplicaURL, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", &done, target)
		if err == nil && done {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("pgtest: the replica has not replayed up to %s (last error: %v)", target, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PauseReplay stops the replica applying the WAL it receives
// (pg_wal_replay_pause), so that it falls behind the primary; it fails tb
// if the replica refuses.
func (r *Replicated) PauseReplay(tb testing.TB) {
	tb.Helper()
	if err := r.execReplica(tb.Context(), "SELECT pg_wal_replay_pause()"); err != nil {
		tb.Fatal(err)
	}
}

// ResumeReplay undoes PauseReplay; it fails tb if the replica refuses.
func (r *Replicated) ResumeReplay(tb testing.TB) {
	tb.Helper()
	if err := r.execReplica(tb.Context(), "SELECT pg_wal_replay_resume()"); err != nil {
		tb.Fatal(err)
	}
}

// StopReplica shuts the replica down (the primary keeps running); it fails
// tb if the replica does not stop.
func (r *Replicated) StopReplica(tb testing.TB) {
	tb.Helper()
	if err := r.replica.Stop(); err != nil {
		tb.Fatal(err)
	}
}

func (r *Replicated) execReplica(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, r.ReplicaURL)
	if err != nil {
		return fmt.Errorf("pgtest: replica: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: replica: %s: %w", sql, err)
	}
	return nil
}

// queryRow scans the one row sql yields on the database at url into dest.
func queryRow(ctx context.Context, url, sql string, dest any, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest)
}
