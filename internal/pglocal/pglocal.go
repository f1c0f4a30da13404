// Package pglocal runs a private PostgreSQL cluster from the server binaries
// installed on the machine (initdb and postgres), for `holdfast dev` and for
// tests.
//
// The cluster is reachable only through a unix socket in a directory of its
// own: it never listens on TCP, so it cannot clash with any other server on
// the machine, whatever Port says.
//
// PostgreSQL refuses to run as root. When the calling process is root,
// initdb and postgres are run as the "postgres" OS user instead (see Start).
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// stopTimeout is how long Stop waits for a fast shutdown before
	// killing the server.
	stopTimeout = 30 * time.Second
	// readyTimeout bounds Start's wait for the server when ctx has no
	// deadline.
	readyTimeout = time.Minute
	// maxSocketPath is the longest unix socket path accepted everywhere:
	// sizeof(sun_path)-1 is 107 bytes on Linux, 103 on macOS and the BSDs.
	maxSocketPath = 103
	// superuser is the cluster's superuser, made by initdb.
	superuser = "postgres"
)

// ErrNotInstalled is the error of FindBinDir (and Start) on a machine
// without PostgreSQL's server binaries.
var ErrNotInstalled = errors.New("pglocal: PostgreSQL server binaries (initdb, postgres) not found in $PATH or /usr/lib/postgresql/*/bin")

// Config says where and how to run a cluster. Only Dir is required.
type Config struct {
	// Dir is the cluster's own directory, created if missing. The data
	// directory is Dir/pgdata and the server's unix socket goes in Dir,
	// unless the socket's path would be too long for the kernel (more than
	// 103 bytes, so Dir longer than about 88): then the socket goes in a
	// fresh short directory under /tmp, which Stop removes. URL always
	// names the right directory.
	//
	// When the process runs as root, Start hands Dir over to the
	// "postgres" OS user (see Start), so Dir must not be shared with
	// anything else.
	Dir string

	// BinDir is the directory holding initdb and postgres.
	// Default: the result of FindBinDir.
	BinDir string

	// Port is the server's port number. The server does not listen on
	// TCP; the number only names the socket file (.s.PGSQL.<Port>) and
	// appears in URLs. Default: 5432.
	Port int

	// Fast trades durability for speed: fsync, synchronous_commit and
	// full_page_writes are off and initdb does not sync. For tests and
	// throwaway data only: a machine crash can corrupt a Fast cluster.
	Fast bool

	// Log receives the output of initdb and the server's log, which
	// passes through this process: if it dies, the rest is lost.
	// Default: the file Dir/postgres.log, appended to.
	Log io.Writer

	// MaxConnections is the server's max_connections. Default: 200.
	MaxConnections int
}

// Cluster is a running server started by Start. Its methods are safe for
// concurrent use.
type Cluster struct {
	port     int
	sockDir  string // directory of the server's unix socket
	tmpSock  bool   // sockDir was made by Start under /tmp; Stop removes it
	logFile  *os.File
	tail     *tailWriter
	cmd      *exec.Cmd     // the postmaster; nil until it has started
	exited   chan struct{} // closed once the postmaster has exited
	stopOnce sync.Once
	stopErr  error
}

// FindBinDir returns the directory holding the PostgreSQL server binaries
// initdb and postgres. It looks for initdb in $PATH first (following
// symlinks to find postgres next to it), then in /usr/lib/postgresql/*/bin,
// where Debian and Ubuntu install them, picking the highest version. The
// error, when neither has them, says how to install them.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs := []string{filepath.Dir(p)}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append([]string{filepath.Dir(real)}, dirs...)
		}
		for _, d := range dirs {
			if hasServerBinaries(d) {
				return filepath.Abs(d)
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", -1.0
	for _, d := range dirs {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64) // "15", "9.6"
		if err == nil && v > bestVersion && hasServerBinaries(d) {
			best, bestVersion = d, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w; install them with `apt-get install postgresql` (Debian, Ubuntu) or run scripts/ensure-postgres.sh", ErrNotInstalled)
	}
	return best, nil
}

// hasServerBinaries reports whether dir holds executable initdb and postgres.
func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Start starts a cluster as described by cfg and waits until it accepts
// connections.
//
// If Dir/pgdata has no PG_VERSION file, Start first creates the cluster with
// initdb: superuser "postgres", trust authentication, UTF8 encoding, locale C
// (byte-order collation). It is built in Dir/pgdata.initdb and renamed, so an
// interrupted initdb leaves nothing for the next Start to trip on; a
// non-empty Dir/pgdata without PG_VERSION is an error. A postmaster.pid left behind by a server that is no
// longer running is removed; if that server is still running, Start fails
// with an error naming its pid. The server is tuned with shared_buffers=128MB
// and cfg.MaxConnections.
//
// The server is a child process in its own process group, so a Ctrl-C at
// the terminal reaches only the parent, which should call Stop. On Linux, the
// server also gets SIGINT (fast shutdown) if the parent dies without calling
// Stop.
//
// When the process runs as root, initdb and postgres run as the "postgres" OS
// user (an error says so if there is none): Start makes that user the owner
// of Dir and grants search (o+x) permission on any directory above Dir that
// the user cannot otherwise traverse, such as the 0700 directories made by
// os.MkdirTemp and testing.T.TempDir.
//
// Start waits for the server until ctx is done, or for a minute if ctx has no
// deadline. Errors from initdb or a server that exits during startup include
// the end of their output.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, dir, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = 5432
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("pglocal: Config.Port %d out of range", cfg.Port)
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 200
	}
	if cfg.MaxConnections < 1 {
		return nil, fmt.Errorf("pglocal: Config.MaxConnections %d out of range", cfg.MaxConnections)
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, cred); err != nil {
		return nil, err
	}

	c := &Cluster{port: cfg.Port, sockDir: dir, tail: new(tailWriter), exited: make(chan struct{})}
	if cfg.Log == nil {
		if c.logFile, err = os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("pglocal: %w", err)
		}
		cfg.Log = c.logFile
	}
	log := io.MultiWriter(cfg.Log, c.tail)
	if err := c.start(ctx, cfg, dir, log, cred); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// start does the work of Start once the configuration is complete.
func (c *Cluster) start(ctx context.Context, cfg Config, dir string, log io.Writer, cred *syscall.Credential) error {
	dataDir := filepath.Join(dir, "pgdata")
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := c.initdb(ctx, cfg, dataDir, log, cred); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := removeStalePID(dataDir); err != nil {
		return err
	}

	socket := fmt.Sprintf(".s.PGSQL.%d", cfg.Port)
	if len(filepath.Join(dir, socket)) > maxSocketPath {
		d, err := os.MkdirTemp("/tmp", "pglocal-")
		if err != nil {
			return fmt.Errorf("pglocal: socket directory: %w", err)
		}
		c.sockDir, c.tmpSock = d, true
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("pglocal: %w", err)
			}
		}
	}

	args := []string{
		"-D", dataDir,
		// A list of directories: quote it in case the path has spaces or commas.
		"-k", `"` + strings.ReplaceAll(c.sockDir, `"`, `""`) + `"`,
		"-p", strconv.Itoa(cfg.Port),
		"-c", "listen_addresses=",
		"-c", "shared_buffers=128MB",
		"-c", "max_connections=" + strconv.Itoa(cfg.MaxConnections),
	}
	if cfg.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(cfg.BinDir, "postgres"), args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	setParentDeathSignal(cmd.SysProcAttr, syscall.SIGINT)
	// Backends left behind by a killed postmaster hold the log pipe open;
	// don't let them hold up Wait for long.
	cmd.WaitDelay = 5 * time.Second
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits, which happens when a goroutine locked to it ends.
		// Keep this thread for as long as the child runs: the goroutine
		// never unlocks, so the thread ends with it, after the child.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pglocal: starting postgres: %w", err)
	}
	c.cmd = cmd
	return c.waitReady(ctx)
}

// initdb creates a cluster in dataDir. It builds it next door and renames
// it into place, so that an interrupted initdb leaves no half-made cluster
// that the next Start would try to run.
func (c *Cluster) initdb(ctx context.Context, cfg Config, dataDir string, log io.Writer, cred *syscall.Credential) error {
	tmp := dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	args := []string{"-D", tmp, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C"}
	if cfg.Fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"), args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = filepath.Dir(dataDir), log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pglocal: initdb %s: %w; output:\n%s", dataDir, err, c.tail)
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}

// waitReady polls the server with connection attempts until one succeeds,
// the server exits or ctx is done.
func (c *Cluster) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.exited:
			return fmt.Errorf("pglocal: postgres exited during startup (%v); log:\n%s", c.cmd.ProcessState, c.tail)
		case <-ctx.Done():
			return fmt.Errorf("pglocal: postgres not accepting connections: %w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL returns a connection URL, for pgx and libpq, for database dbname as
// the superuser "postgres" through the cluster's unix socket, such as
// postgres://postgres@/app?host=/path/to/dir&port=5432&sslmode=disable.
func (c *Cluster) URL(dbname string) string {
	// Keep slashes readable; libpq does not decode "+" as a space.
	host := strings.NewReplacer("%2F", "/", "+", "%20").Replace(url.QueryEscape(c.sockDir))
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", superuser, url.PathEscape(dbname), host, c.port)
}

// CreateDatabase creates database name, owned by the superuser, unless it
// exists already. It fails if name is empty, longer than 63 bytes (which
// PostgreSQL would truncate) or holds a NUL byte, or if the server does.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if name == "" || len(name) > 63 || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("pglocal: invalid database name %q: want 1 to 63 bytes, no NUL", name)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err == nil && !exists {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("pglocal: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down with a fast shutdown (SIGINT: sessions are
// ended, data is kept) and waits for it to exit. If it has not exited after
// 30 seconds, Stop kills it and its backends (SIGKILL) and returns an error
// saying so. If the server had already exited on its own, Stop returns nil.
// Stop also closes the default log file and removes the socket directory if
// Start made one under /tmp. Calling Stop again returns the first call's
// result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

// stop does the work of Stop, once.
func (c *Cluster) stop() error {
	defer func() {
		if c.tmpSock {
			os.RemoveAll(c.sockDir)
		}
		if c.logFile != nil {
			c.logFile.Close()
		}
	}()
	if c.cmd == nil {
		return nil
	}
	pid := c.cmd.Process.Pid
	why := fmt.Sprintf("did not shut down within %v", stopTimeout)
	if err := c.cmd.Process.Signal(os.Interrupt); err == nil || errors.Is(err, os.ErrProcessDone) {
		select {
		case <-c.exited:
			return nil
		case <-time.After(stopTimeout):
		}
	} else {
		why = fmt.Sprintf("could not be sent SIGINT (%v)", err)
	}
	syscall.Kill(-pid, syscall.SIGKILL) // the whole process group: postmaster and backends
	<-c.exited
	return fmt.Errorf("pglocal: postgres (pid %d) %s; killed it", pid, why)
}

// tailWriter keeps the last 4 KiB written to it, for error messages.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	const size = 4 << 10
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if extra := len(w.buf) - size; extra > 0 {
		w.buf = append(w.buf[:0], w.buf[extra:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// checkConfig returns cfg with its BinDir found where it was not given, and
// the absolute data directory.
func checkConfig(cfg Config) (Config, string, error) {
	if cfg.Dir == "" {
		return cfg, "", errors.New("pglocal: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return cfg, "", fmt.Errorf("pglocal: %w", err)
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = FindBinDir(); err != nil {
			return cfg, "", err
		}
	} else if !hasServerBinaries(cfg.BinDir) {
		return cfg, "", fmt.Errorf("pglocal: Config.BinDir %s does not hold initdb and postgres", cfg.BinDir)
	}
	return cfg, dir, nil
}
