package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// ReplicaConfig configures reads from a PostgreSQL streaming replica of the
// database (see DB.OpenReplica and docs/decisions/0077).
type ReplicaConfig struct {
	// URL is the replica's connection URL. Required.
	URL string
	// MaxConns caps the replica's pool. Default: the primary pool's size.
	MaxConns int32
	// MaxLag is the replica lag past which reads go to the primary.
	// Default 30s.
	MaxLag time.Duration
	// Interval is how often the replica's lag is sampled. Default 1s.
	Interval time.Duration
	// Logger receives the replica's changes of state. Default: discarded.
	Logger *slog.Logger
	// Registerer receives the replica's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults, the pool
// size being primary's.
func (c ReplicaConfig) WithDefaults(primary int32) ReplicaConfig {
	if c.MaxConns == 0 {
		c.MaxConns = primary
	}
	if c.MaxLag == 0 {
		c.MaxLag = 30 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c ReplicaConfig) validate() error {
	switch {
	case c.URL == "":
		return errors.New("postgres: ReplicaConfig.URL is required")
	case c.MaxConns < 1:
		return errors.New("postgres: ReplicaConfig.MaxConns must be at least 1")
	case c.MaxLag < 0 || c.Interval < 0:
		return errors.New("postgres: ReplicaConfig.MaxLag and Interval must not be negative")
	}
	return nil
}

// Why reads go to the primary while a replica is configured: the label
// values of holdfast_db_replica_fallbacks_total.
const (
	fallbackLag         = "lag"         // the last sample found the replica more than MaxLag behind
	fallbackUnreachable = "unreachable" // the last sample or read could not reach it
	fallbackConflict    = "conflict"    // the replica cancelled the read (a conflict with recovery)
)

// replica is the read pool on a streaming replica and the sampler that
// decides whether reads may use it.
type replica struct {
	pool *pgxpool.Pool
	cfg  ReplicaConfig

	// unusable is why reads go to the primary now: "" while the replica
	// is usable, else one of the fallback reasons.
	unusable  atomic.Pointer[string]
	lag       prometheus.Gauge
	up        prometheus.Gauge
	fallbacks *prometheus.CounterVec
	run       lifecycle.Runner
}

// OpenReplica opens a pool on a streaming replica of db's database and
// routes db's history reads to it (exports, lists: see
// docs/decisions/0077): a sampler measures the replica's lag every
// Interval, and while the replica is unreachable or more than MaxLag
// behind, those reads go to the primary instead. The pool is configured
// like db's (statement timeout, acquire timeout, type registrations), with
// application_name holdfast-read. A replica that cannot be reached at
// start is not an error: reads use the primary until it can be. Call it
// once, before the services built on db serve reads; Close stops the
// sampler and closes the pool. Errors: a bad configuration or URL, or
// metrics already registered.
func (db *DB) OpenReplica(ctx context.Context, cfg ReplicaConfig) error {
	primary := db.Pool.Config()
	cfg = cfg.WithDefaults(primary.MaxConns)
	if err := cfg.validate(); err != nil {
		return err
	}
	if db.replica != nil {
		return errors.New("postgres: OpenReplica called twice")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return fmt.Errorf("postgres: parse replica url: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.AfterConnect = primary.AfterConnect
	pc.ConnConfig.Tracer = primary.ConnConfig.Tracer
	pc.ConnConfig.RuntimeParams["statement_timeout"] = primary.ConnConfig.RuntimeParams["statement_timeout"]
	pc.ConnConfig.RuntimeParams["application_name"] = "holdfast-read"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("postgres: open replica pool: %w", err)
	}
	r := &replica{
		pool: pool, cfg: cfg,
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "holdfast_db_replica_lag_seconds",
			Help: "How far the read replica's replay is behind the primary, sampled periodically; 0 while it has replayed all it received from a streaming primary."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "holdfast_db_replica_up",
			Help: "1 while history reads go to the read replica, 0 while they fall back to the primary."}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_db_replica_fallbacks_total",
			Help: "Reads meant for the read replica that the primary served, by reason: lag, unreachable, conflict."}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lag, r.up, r.fallbacks} {
			if err := cfg.Registerer.Register(c); err != nil {
				pool.Close()
				return fmt.Errorf("postgres: replica metrics: %w", err)
			}
		}
	}
	r.setUnusable(fallbackUnreachable)
	r.sample(ctx)
	db.replica = r
	runCtx := r.run.Start(ctx)
	r.run.Go(func() {
		for lifecycle.Sleep(runCtx, cfg.Interval) {
			r.sample(runCtx)
		}
	})
	return nil
}

// close stops the sampler and closes the pool.
func (r *replica) close() {
	r.run.Stop()
	r.pool.Close()
}

// lagSQL reads the replica's lag: 0 when it is streaming from its primary
// and has replayed everything received; otherwise the age of the last
// transaction replayed (NULL if none was), which overstates the lag when
// the primary was idle before its latest write. A replica cut off from its
// primary cannot tell how far behind it is, so it counts as that old.
const lagSQL = `SELECT pg_is_in_recovery(),
	coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
	coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),
	extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8`

// sample measures the lag once and decides whether reads may use the
// replica.
func (r *replica) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Interval, time.Second))
	defer cancel()
	var recovering, streaming, caughtUp bool
	var age *float64
	err := r.pool.QueryRow(Patient(ctx), lagSQL).Scan(&recovering, &streaming, &caughtUp, &age)
	if err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.markDown(err)
		}
		return
	}
	lag := math.Inf(1)
	switch {
	case !recovering || streaming && caughtUp:
		lag = 0
	case age != nil:
		lag = max(*age, 0)
	}
	r.lag.Set(lag)
	if lag > r.cfg.MaxLag.Seconds() {
		r.setUnusable(fallbackLag)
	} else {
		r.setUnusable("")
	}
}

// setUnusable records why reads go to the primary ("" for none), logging
// a change.
func (r *replica) setUnusable(reason string) {
	old := r.unusable.Swap(&reason)
	if old != nil && *old == reason {
		return
	}
	if reason == "" {
		r.up.Set(1)
		r.cfg.Logger.Info("history reads go to the read replica")
	} else {
		r.up.Set(0)
		if old != nil {
			r.cfg.Logger.Warn("reads fall back to the primary", "reason", reason)
		}
	}
}

// markDown takes the replica out of use after a failure to reach it.
func (r *replica) markDown(err error) {
	if p := r.unusable.Load(); p == nil || *p != fallbackUnreachable {
		r.cfg.Logger.Warn("the read replica is unreachable", "err", err)
	}
	r.setUnusable(fallbackUnreachable)
}

// use reports whether a read may go to the replica; when not, it counts
// the read as a fallback.
func (r *replica) use() bool {
	reason := *r.unusable.Load()
	if reason == "" {
		return true
	}
	r.fallbacks.WithLabelValues(reason).Inc()
	return false
}

// failed reports whether a read on the replica that returned err should
// run again on the primary, counting it: the replica could not be reached
// (and is taken out of use until a sample finds it again), or it cancelled
// the read for a conflict with recovery. A timeout or the caller's own end
// is not retried: the primary would fare no better.
func (r *replica) failed(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var pe *pgconn.PgError
	switch {
	case unavailable(err):
		r.markDown(err)
		r.fallbacks.WithLabelValues(fallbackUnreachable).Inc()
	case errors.As(err, &pe) && pe.Code == "40001":
		r.fallbacks.WithLabelValues(fallbackConflict).Inc()
	default:
		return false
	}
	return true
}

// reader is what a read needs of a pool: the primary's or the replica's.
type reader interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// read runs fn on the replica's pool when there is a usable replica, else
// on the primary's. If the replica fails the read (see replica.failed), or
// fn finds nothing there (ENOTFOUND: the replica may not have replayed
// what the caller just made), fn runs again on the primary, so fn must
// hand nothing to its caller before it returns nil. Without OpenReplica
// every read goes to the primary.
func (db *DB) read(ctx context.Context, fn func(reader) error) error {
	r := db.replica
	if r == nil || !r.use() {
		return fn(db.Pool)
	}
	err := fn(r.pool)
	if r.failed(ctx, err) || holdfast.ErrorCode(err) == holdfast.ENOTFOUND {
		return fn(db.Pool)
	}
	return err
}

// beginAccountRead begins a read-only repeatable-read transaction for a
// read of the tenant's account that streams its rows to its caller, and
// checks in it that the account is the tenant's: on the replica when there
// is a usable one; on the primary if not, if the replica fails, or if the
// replica does not know the account (it may not have replayed its
// creation yet). Once it has returned the transaction, a failure is the
// caller's. Errors: ENOTFOUND for an account unknown to the tenant, or
// the database's, classified.
func (db *DB) beginAccountRead(ctx context.Context, tenantID, accountID string) (pgx.Tx, error) {
	if r := db.replica; r != nil && r.use() {
		tx, err := beginOwned(ctx, r.pool, tenantID, accountID)
		if !r.failed(ctx, err) && holdfast.ErrorCode(err) != holdfast.ENOTFOUND {
			return tx, err
		}
	}
	return beginOwned(ctx, db.Pool, tenantID, accountID)
}

// beginOwned begins a read-only repeatable-read transaction on pool and
// checks in it that the account is the tenant's; it returns the
// transaction only if it is.
func beginOwned(ctx context.Context, pool *pgxpool.Pool, tenantID, accountID string) (pgx.Tx, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, contextError(ctx, err)
	}
	var owned bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2)", tenantID, accountID).Scan(&owned); err != nil {
		tx.Rollback(ctx)
		return nil, contextError(ctx, err)
	}
	if !owned {
		tx.Rollback(ctx)
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	return tx, nil
}

// collectRead runs sql through db.read and collects its rows with fn, which
// must keep no state across rows (a retry on the primary calls it again).
func collectRead[T any](ctx context.Context, db *DB, fn pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	var list []T
	err := db.read(ctx, func(q reader) error {
		rows, _ := q.Query(ctx, sql, args...)
		var err error
		list, err = pgx.CollectRows(rows, fn)
		return err
	})
	return list, err
}
