// Package postgres implements Holdfast's services on PostgreSQL with pgx v5:
// the system of record for tenants, accounts, transfers and idempotency keys.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
)

// Config configures the connection pool.
type Config struct {
	// URL is the PostgreSQL connection URL. Required.
	URL string
	// MaxConns caps the pool. Default: 4 × cores, at least 8.
	MaxConns int32
	// StatementTimeout bounds every statement on the server side. Default 30s.
	StatementTimeout time.Duration
	// AcquireTimeout bounds each wait for a free connection, so that a busy
	// pool makes requests fail fast instead of queueing for their whole
	// deadline: past it the call fails with context.DeadlineExceeded while
	// the caller's own context is still live (the HTTP layer answers 503
	// overloaded). Default 1s; negative: wait as long as the caller's
	// context allows.
	AcquireTimeout time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = int32(max(8, 4*runtime.NumCPU()))
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = 30 * time.Second
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = time.Second
	}
	return c
}

func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("postgres: URL is required")
	}
	if c.MaxConns < 1 {
		return errors.New("postgres: MaxConns must be at least 1")
	}
	return nil
}

// DB is a pool of connections to one Holdfast database.
type DB struct {
	Pool *pgxpool.Pool
	// Now returns the current time; tests may replace it before use.
	Now func() time.Time

	relays  wakeSet  // the relays listening in this process (ListenOutbox)
	replica *replica // where history reads go, if OpenReplica was called
}

// Open connects to the database; it does not migrate (see Migrate).
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	pc.ConnConfig.RuntimeParams["application_name"] = "holdfast"
	pc.AfterConnect = RegisterArrays
	if cfg.AcquireTimeout > 0 {
		pc.ConnConfig.Tracer = acquireTimeout(cfg.AcquireTimeout)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	return &DB{Pool: pool, Now: time.Now}, nil
}

// acquireTimeout bounds every wait for a pooled connection: pgxpool uses
// the context TraceAcquireStart returns for the rest of Acquire (and only
// for it: the query runs under the caller's context).
type acquireTimeout time.Duration

type acquireCancelKey struct{}

func (t acquireTimeout) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	if ctx.Value(patientKey{}) != nil {
		return ctx
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t))
	return context.WithValue(ctx, acquireCancelKey{}, cancel)
}

func (acquireTimeout) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	if cancel, ok := ctx.Value(acquireCancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

type patientKey struct{}

// Patient returns a context whose connection acquires wait as long as ctx
// allows, without the pool's AcquireTimeout: for background work (the
// outbox relay) that must get through a busy pool eventually rather than
// fail fast like a request.
func Patient(ctx context.Context) context.Context { return context.WithValue(ctx, patientKey{}, true) }

// TraceQueryStart and TraceQueryEnd make acquireTimeout a pgx.QueryTracer,
// the type of pgx.ConnConfig.Tracer; they do nothing.
func (acquireTimeout) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (acquireTimeout) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Close closes the pool, and the replica's if OpenReplica opened one,
// waiting for connections in use to be released.
func (db *DB) Close() {
	if db.replica != nil {
		db.replica.close()
	}
	db.Pool.Close()
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// now returns the current time at the database's precision (microseconds),
// so what is rendered before a commit equals what is read back after it.
func (db *DB) now() time.Time { return db.Now().UTC().Truncate(time.Microsecond) }

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the advisory lock that serializes migrations across replicas.
const migrateLock = 0x686f6c64 // "hold"

// Migrate applies the embedded migrations that have not run yet, each in its
// own transaction. Safe to call from several replicas at once. It is start-up
// work, not a request: its connection waits as long as ctx allows rather than
// the pool's AcquireTimeout (connecting on a busy machine may take longer).
func Migrate(ctx context.Context, db *DB) error { return MigrateTo(ctx, db, math.MaxInt) }

// MigrateTo applies the embedded migrations up to and including version
// that have not run yet, like Migrate: a test of a migration builds the
// schema it starts from with it.
func MigrateTo(ctx context.Context, db *DB, version int) error {
	conn, err := db.Pool.Acquire(Patient(ctx))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: bad migration name %q", base)
		}
		if n > version {
			break
		}
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", n).Scan(&done); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if done {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", n)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", base, err)
		}
	}
	return nil
}

// retryable reports whether err is a transient conflict worth running the
// transaction again for (deadlock, serialization failure).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40P01" || pe.Code == "40001"
	}
	return false
}

// contextError is the one place that classifies the database's failures
// for callers: an error that already carries an application code keeps it;
// a cancelled or expired context is returned as such; a statement cut off
// by statement_timeout is EOVERLOADED (the database is too busy: retry
// later); a failure to reach the database or a connection lost or shut
// down is EUNAVAILABLE (see unavailable). Other errors pass through.
func contextError(ctx context.Context, err error) error {
	var coded *holdfast.Error
	if errors.As(err, &coded) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "57014" {
		return &holdfast.Error{Code: holdfast.EOVERLOADED, Message: "the database did not answer in time; retry shortly", Err: err}
	}
	if unavailable(err) {
		return &holdfast.Error{Code: holdfast.EUNAVAILABLE, Message: "the database is unavailable; retry shortly", Err: err}
	}
	return err
}

// unavailable reports whether err means the database could not be reached
// or the connection went away: a failed connection attempt (refused, no
// socket, the server starting or shutting down), a server that ended the
// session (admin_shutdown, crash_shutdown, cannot_connect_now, or a
// connection exception, class 08), or a connection closed or reset under a
// query. A caller that sent a write before such a failure does not know
// whether it committed (see TransferService.settle).
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// inDoubt reports whether err, from a round trip that sent COMMIT, leaves
// its outcome unknown: the server reported no error of the transaction's
// own (which would have rolled it back), and the request may have reached
// it (pgconn.SafeToRetry says when it cannot have). A connection cut off,
// lost or shut down (a FATAL error ends the session, possibly after the
// commit) is in doubt.
func inDoubt(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.SeverityUnlocalized == "FATAL" || pe.SeverityUnlocalized == "PANIC" || pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return !pgconn.SafeToRetry(err)
}

// errOutcomeUnknown answers a write whose commit was sent but whose outcome
// could not be learnt: a retry might apply it twice.
var errOutcomeUnknown = holdfast.Errorf(holdfast.EOUTCOMEUNKNOWN,
	"the database connection failed while the write was committing, so it may or may not have been applied: look it up, or retry with the same Idempotency-Key or client id, before sending it again")

// commitTimeout bounds a write's last round trip once it runs without its
// caller's deadline (see commit): the writer's default BatchTimeout.
const commitTimeout = 10 * time.Second

// commit commits tx whatever the caller's deadline, bounded by
// commitTimeout: once COMMIT is sent the write may apply, so its outcome,
// not the deadline, is the caller's answer. A commit whose outcome is lost
// with the connection is EOUTCOMEUNKNOWN; other errors go through
// contextError.
func commit(ctx context.Context, tx pgx.Tx) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err := tx.Commit(cctx)
	if err != nil && !errors.Is(err, pgx.ErrTxCommitRollback) && inDoubt(err) {
		return &holdfast.Error{Code: holdfast.EOUTCOMEUNKNOWN, Message: errOutcomeUnknown.Message, Err: err}
	}
	if err != nil {
		return contextError(ctx, err)
	}
	return nil
}
