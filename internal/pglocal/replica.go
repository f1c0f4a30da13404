package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// StartReplica starts a streaming replica of primary, a cluster started by
// Start on this machine, as described by cfg (Dir, BinDir, Port, Fast, Log
// and MaxConnections mean what they mean for Start).
//
// If Dir/pgdata holds no cluster yet, StartReplica first copies primary
// with pg_basebackup -R (a fast checkpoint, the WAL streamed alongside),
// built in Dir/pgdata.basebackup and renamed into place like initdb's
// output. -R leaves standby.signal and a primary_conninfo naming primary's
// socket, so the server starts as a hot standby that follows primary; it
// also gets hot_standby_feedback=on, so that the primary's vacuum does not
// cancel long queries on the replica. The primary needs nothing set for
// this: PostgreSQL's defaults (wal_level=replica, max_wal_senders=10) and
// the pg_hba.conf that initdb writes with trust authentication (local
// replication connections included) allow it.
//
// StartReplica returns once the replica accepts connections, which a hot
// standby does when it has reached a consistent state; it may still be
// behind primary. Stop it like any cluster. Errors are Start's, or
// pg_basebackup's with the end of its output.
func StartReplica(ctx context.Context, primary *Cluster, cfg Config) (*Cluster, error) {
	if primary == nil {
		return nil, errors.New("pglocal: StartReplica needs a primary")
	}
	cfg, dir, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, cred); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "pgdata")
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := basebackup(ctx, cfg, primary, dataDir, cred); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	return Start(ctx, cfg)
}

// basebackup copies primary into dataDir with pg_basebackup -R, next door
// first so that an interrupted copy leaves nothing for Start to run.
func basebackup(ctx context.Context, cfg Config, primary *Cluster, dataDir string, cred *syscall.Credential) error {
	tool := filepath.Join(cfg.BinDir, "pg_basebackup")
	if _, err := os.Stat(tool); err != nil {
		return fmt.Errorf("pglocal: pg_basebackup not found next to postgres in %s (it comes with the PostgreSQL client package): %w", cfg.BinDir, err)
	}
	tmp := dataDir + ".basebackup"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	args := []string{"-D", tmp, "-R", "-X", "stream", "-c", "fast",
		"-h", primary.sockDir, "-p", strconv.Itoa(primary.port), "-U", superuser, "-w"}
	if cfg.Fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = filepath.Dir(dataDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	tail := new(tailWriter)
	cmd.Stdout, cmd.Stderr = tail, tail
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pglocal: pg_basebackup into %s: %w; output:\n%s", dataDir, err, tail)
	}
	auto, err := os.OpenFile(filepath.Join(tmp, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	_, err = auto.WriteString("hot_standby = on\nhot_standby_feedback = on\n")
	if err := errors.Join(err, auto.Close()); err != nil {
		return fmt.Errorf("pglocal: configuring the replica: %w", err)
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}
