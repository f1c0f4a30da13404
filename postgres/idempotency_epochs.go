package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// epochLock is the advisory lock that orders the inserts of idempotency keys
// with the start of a new epoch. Every transaction that may insert a key
// takes it shared before it looks the key up; the rotator takes it
// exclusively to start the next epoch. So all inserts that can race on one
// key go to the same epoch's partition, whose primary key refuses the
// second, and a transaction that starts after a new epoch began sees every
// key the epochs before committed.
const epochLock = 0x65706368 // "epch"

// rotateLock is the advisory lock of the replica that maintains the epochs
// (one at a time; the others skip their turn).
const rotateLock = 0x726f7461 // "rota"

// epochSharedSQL takes epochLock ($1) shared until the transaction ends.
const epochSharedSQL = "SELECT pg_advisory_xact_lock_shared($1)"

// isKeyPartitionPkey reports whether constraint is the primary key of a
// partition of idempotency_keys (idempotency_keys_e<N>_pkey).
func isKeyPartitionPkey(constraint string) bool {
	return strings.HasPrefix(constraint, "idempotency_keys_e") && strings.HasSuffix(constraint, "_pkey")
}

// KeyRotatorConfig configures the maintenance of the idempotency keys'
// partitions.
type KeyRotatorConfig struct {
	// Retention is how long a key is kept at least. Default
	// holdfast.DefaultIdempotencyRetention (24h).
	Retention time.Duration
	// Period is how long an epoch lasts: keys are kept for between
	// Retention and Retention + Period. Default Retention / 4.
	Period time.Duration
	// Interval is the pause between maintenance passes. Default 1 minute, or
	// half of Period when that is shorter, but at least a second.
	Interval time.Duration
	// LockTimeout bounds each wait of a pass for a lock (the epoch lock
	// taken exclusively, the table's lock to add or detach a partition),
	// and so the pause it can cause to writers; a pass that times out is
	// retried at the next. Default 2s.
	LockTimeout time.Duration
	// Logger receives what passes did and their failures. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields set to their defaults.
func (c KeyRotatorConfig) WithDefaults() KeyRotatorConfig {
	if c.Retention == 0 {
		c.Retention = holdfast.DefaultIdempotencyRetention
	}
	if c.Period == 0 {
		c.Period = c.Retention / 4
	}
	if c.Interval == 0 {
		c.Interval = max(min(time.Minute, c.Period/2), time.Second)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c KeyRotatorConfig) validate() error {
	if c.Retention <= 0 || c.Period <= 0 || c.Interval <= 0 || c.LockTimeout <= 0 {
		return errors.New("postgres: key rotator durations must be positive")
	}
	return nil
}

// KeyRotator keeps the idempotency keys' partitions: it creates the next
// two epochs' partitions ahead, starts a new epoch every Period, and drops
// each partition whose epoch ended more than Retention ago. It is safe to
// run in every replica: one pass runs at a time, under an advisory lock.
type KeyRotator struct {
	db     *DB
	cfg    KeyRotatorConfig
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewKeyRotator returns a KeyRotator; call Start to run it.
func NewKeyRotator(db *DB, cfg KeyRotatorConfig) (*KeyRotator, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &KeyRotator{db: db, cfg: cfg}, nil
}

// Start runs passes in the background until Stop. Starting twice is a no-op.
func (r *KeyRotator) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return nil
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			if p, err := r.Rotate(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("idempotency keys: rotate", "err", err)
			} else if p.Started || len(p.Dropped) > 0 {
				r.cfg.Logger.Info("idempotency keys: rotated", "epoch", p.Epoch, "dropped", p.Dropped)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the background passes and waits for them. Idempotent, and safe before Start.
func (r *KeyRotator) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// RotatePass is what one pass did.
type RotatePass struct {
	Skipped bool    // another replica's pass was running
	Epoch   int64   // the current epoch after the pass
	Started bool    // the pass started Epoch
	Dropped []int64 // the epochs whose partitions it dropped
}

// Rotate runs one pass now.
func (r *KeyRotator) Rotate(ctx context.Context) (RotatePass, error) {
	var p RotatePass
	conn, err := r.db.Pool.Acquire(Patient(ctx))
	if err != nil {
		return p, fmt.Errorf("rotate idempotency keys: %w", err)
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", rotateLock).Scan(&mine); err != nil {
		return p, fmt.Errorf("rotate idempotency keys: %w", err)
	}
	if !mine {
		p.Skipped = true
		return p, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", rotateLock)
	c := conn.Conn()
	if _, err := c.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)",
		strconv.FormatInt(r.cfg.LockTimeout.Milliseconds(), 10)); err != nil {
		return p, fmt.Errorf("rotate idempotency keys: %w", err)
	}
	defer c.Exec(context.WithoutCancel(ctx), "RESET lock_timeout")
	if p.Epoch, p.Started, err = r.advance(ctx, c); err != nil {
		return p, err
	}
	p.Dropped, err = r.drop(ctx, c, p.Epoch)
	return p, err
}

// advance creates the partitions of the two epochs after the current one
// if they are missing, then starts the next epoch if the current one is
// Period old (and creates the one after it). The partition of an epoch
// exists before any key can go to it.
func (r *KeyRotator) advance(ctx context.Context, c *pgx.Conn) (int64, bool, error) {
	var epoch int64
	var due bool
	err := c.QueryRow(ctx, `SELECT epoch, started_at <= now() - make_interval(secs => $1)
		FROM idempotency_epochs ORDER BY epoch DESC LIMIT 1`, r.cfg.Period.Seconds()).Scan(&epoch, &due)
	if err != nil {
		return 0, false, fmt.Errorf("rotate idempotency keys: %w", err)
	}
	if err := createAhead(ctx, c, epoch); err != nil || !due {
		return epoch, false, err
	}
	// Exclusively: every transaction that may insert a key under the
	// current epoch commits before the next one starts.
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", epochLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO idempotency_epochs (epoch, started_at) VALUES ($1, now())", epoch+1)
		return err
	})
	if err != nil {
		return epoch, false, fmt.Errorf("start epoch %d: %w", epoch+1, err)
	}
	return epoch + 1, true, createAhead(ctx, c, epoch+1)
}

// createAhead creates the partitions of the two epochs after epoch, if
// they are missing.
func createAhead(ctx context.Context, c *pgx.Conn, epoch int64) error {
	for e := epoch + 1; e <= epoch+2; e++ {
		if _, err := c.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS idempotency_keys_e%d
			PARTITION OF idempotency_keys FOR VALUES IN (%d) WITH (fillfactor = 85)`, e, e)); err != nil {
			return fmt.Errorf("create partition of epoch %d: %w", e, err)
		}
	}
	return nil
}

var partitionName = regexp.MustCompile(`^idempotency_keys_e([0-9]+)$`)

// drop detaches and drops the partition of every epoch before current that
// ended more than Retention ago. DETACH CONCURRENTLY lets writers go on;
// one a past pass left half done (pending, or detached and not dropped) is
// finished first.
func (r *KeyRotator) drop(ctx context.Context, c *pgx.Conn, current int64) ([]int64, error) {
	rows, _ := c.Query(ctx, `SELECT k.relname::text, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
		FROM pg_class k LEFT JOIN pg_inherits i ON i.inhrelid = k.oid AND i.inhparent = 'idempotency_keys'::regclass
		WHERE k.relname ~ '^idempotency_keys_e[0-9]+$' AND k.relkind = 'r' AND pg_table_is_visible(k.oid)`)
	type part struct {
		Name              string
		Attached, Pending bool
	}
	parts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[part])
	if err != nil {
		return nil, fmt.Errorf("list key partitions: %w", err)
	}
	rows, _ = c.Query(ctx, `SELECT e.epoch FROM idempotency_epochs e JOIN idempotency_epochs n ON n.epoch = e.epoch + 1
		WHERE e.epoch < $1 AND n.started_at <= now() - make_interval(secs => $2)`, current, r.cfg.Retention.Seconds())
	ended, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list ended epochs: %w", err)
	}
	expired := make(map[int64]bool, len(ended))
	for _, e := range ended {
		expired[e] = true
	}
	var dropped []int64
	for _, p := range parts {
		m := partitionName.FindStringSubmatch(p.Name)
		e, _ := strconv.ParseInt(m[1], 10, 64)
		if !expired[e] {
			continue
		}
		steps := []string{"DROP TABLE " + p.Name}
		switch {
		case p.Pending:
			steps = append([]string{"ALTER TABLE idempotency_keys DETACH PARTITION " + p.Name + " FINALIZE"}, steps...)
		case p.Attached:
			steps = append([]string{"ALTER TABLE idempotency_keys DETACH PARTITION " + p.Name + " CONCURRENTLY"}, steps...)
		}
		for _, s := range steps {
			if _, err := c.Exec(ctx, s); err != nil {
				return dropped, fmt.Errorf("drop partition of epoch %d: %w", e, err)
			}
		}
		dropped = append(dropped, e)
	}
	// An epoch's row is kept while the epoch before it has a partition: its
	// start is when that one ended.
	if _, err := c.Exec(ctx, `DELETE FROM idempotency_epochs e WHERE e.epoch < $1
		AND to_regclass('idempotency_keys_e' || e.epoch) IS NULL
		AND to_regclass('idempotency_keys_e' || (e.epoch - 1)) IS NULL`, current); err != nil {
		return dropped, fmt.Errorf("forget dropped epochs: %w", err)
	}
	return dropped, nil
}
