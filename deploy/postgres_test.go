package deploy_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/pglocal"
)

// asPostgres returns the credential PostgreSQL's tools run with: the
// "postgres" OS user when the test runs as root (PostgreSQL refuses root),
// else none.
func asPostgres(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("running as root without a postgres OS user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// runScript runs one of postgres/'s scripts with env, as cred.
func runScript(t *testing.T, script string, cred *syscall.Credential, env ...string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{script}, "true")...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// The compose file's PostgreSQL pair works as its scripts set it up: the
// primary's init script adds the replication role, the replica's
// entrypoint copies the primary with pg_basebackup into a standby with a
// slot, and the standby then streams what the primary commits. The
// clusters are the machine's PostgreSQL on unix sockets, not the image's.
func TestPostgres_ReplicaStreamsFromPrimary(t *testing.T) {
	bin, err := pglocal.FindBinDir()
	if err != nil {
		t.Skip(err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	primary, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(dir, "primary"), Port: 5440})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop()
	u, err := url.Parse(primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	sock, port := u.Query().Get("host"), u.Query().Get("port")
	path := "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")
	runScript(t, "postgres/primary-init.sh", nil, path, "PGHOST="+sock, "PGPORT="+port,
		"POSTGRES_USER=postgres", "POSTGRES_DB=postgres", "REPLICATION_PASSWORD=test-password",
		"PGDATA="+filepath.Join(dir, "primary", "pgdata"))

	cred := asPostgres(t)
	replicaDir := filepath.Join(dir, "replica")
	if err := os.Mkdir(replicaDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(replicaDir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	// The entrypoint's last step, exec "$@", is `true` here: pglocal then
	// starts the copied data directory, as the image's postgres would.
	runScript(t, "postgres/replica-entrypoint.sh", cred, path, "PGPORT="+port, "PRIMARY_HOST="+sock,
		"REPLICATION_PASSWORD=test-password", "PGDATA="+filepath.Join(replicaDir, "pgdata"))
	replica, err := pglocal.Start(ctx, pglocal.Config{Dir: replicaDir, Port: 5441})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Stop()

	pc, err := pgx.Connect(ctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE TABLE streamed (x int); INSERT INTO streamed VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	rc, err := pgx.Connect(ctx, replica.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var standby bool
	if err := rc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil || !standby {
		t.Fatalf("the replica is not a standby: %v, %v", standby, err)
	}
	for {
		var x int
		err := rc.QueryRow(ctx, "SELECT x FROM streamed").Scan(&x)
		if err == nil && x == 42 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the primary's row never reached the replica: %v", errors.Join(err, ctx.Err()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var active bool
	if err := pc.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'pg_replica'").Scan(&active); err != nil || !active {
		t.Errorf("the primary's slot pg_replica: active %v, %v", active, err)
	}
}
