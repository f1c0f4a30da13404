package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// serverCredential returns whom to run initdb and postgres as: nil (the
// caller) normally, the "postgres" OS user if the caller is root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglocal: PostgreSQL refuses to run as root and there is no \"postgres\" OS user to run it as (%w); "+
			"create one (useradd --system postgres) or run as another user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pglocal: OS user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDir creates dir and, if the server runs as another user (cred),
// gives dir to that user and makes sure it can reach it.
func prepareDir(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pglocal: %w", err)
		}
		perm := fi.Mode().Perm()
		st, ok := fi.Sys().(*syscall.Stat_t)
		canSearch := perm&0o001 != 0 || ok &&
			(st.Uid == cred.Uid && perm&0o100 != 0 || st.Gid == cred.Gid && perm&0o010 != 0)
		if !canSearch {
			if err := os.Chmod(p, fi.Mode()|0o001); err != nil {
				return fmt.Errorf("pglocal: letting user postgres reach %s: %w", dir, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// removeStalePID removes the postmaster.pid file in dataDir if the server
// that wrote it is gone, and fails if it is still running.
func removeStalePID(dataDir string) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid != 0 {
		pid = max(pid, -pid) // negative in single-user mode
		if isPostgres(pid) {
			return fmt.Errorf("pglocal: a postgres server (pid %d) is already running on %s; stop it first (kill -INT %d)", pid, dataDir, pid)
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("pglocal: removing stale %w", err)
	}
	return nil
}

// isPostgres reports whether process pid is running and, where /proc tells
// (Linux), is a postgres server rather than a process that got its pid
// later, such as after a reboot.
func isPostgres(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err != nil || strings.TrimSpace(string(comm)) == "postgres"
}
