package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/export"
)

// ExportConfig configures the export service's own connection pool.
type ExportConfig struct {
	// MaxConns caps the export pool; an export holds one connection for its
	// whole run, so it should equal the HTTP server's ExportSlots.
	// Default 4 × GOMAXPROCS.
	MaxConns int32
}

// WithDefaults returns c with zero fields set to their defaults.
func (c ExportConfig) WithDefaults() ExportConfig {
	if c.MaxConns == 0 {
		c.MaxConns = int32(4 * runtime.GOMAXPROCS(0))
	}
	return c
}

func (c ExportConfig) validate() error {
	if c.MaxConns < 1 {
		return errors.New("postgres: ExportConfig.MaxConns must be at least 1")
	}
	return nil
}

// exportStatements is how many statements an export connection caches:
// the ownership check and ExportQuery, with room to spare.
const exportStatements = 4

// ExportService streams an account's entries from one query. It has its own
// pool, so long exports can never take the connections transfers need; with
// a read replica (DB.OpenReplica), a second one on the replica, which
// exports use while the replica is usable.
type ExportService struct {
	pool    *pgxpool.Pool
	replica *pgxpool.Pool // nil without a replica
	db      *DB
}

// NewExportService returns an export service with a pool configured like
// db's but sized by cfg and without db's statement timeout (an export of
// millions of rows runs for minutes; it ends when its context does), and
// one more like it on db's replica if db has one: an export holds a
// connection of one pool or the other, so each is sized for every export
// slot. The pools connect lazily. Close it when done.
func NewExportService(db *DB, cfg ExportConfig) (*ExportService, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &ExportService{db: db}
	var err error
	if s.pool, err = newExportPool(db.Pool.Config(), cfg); err != nil {
		return nil, err
	}
	if db.replica != nil {
		if s.replica, err = newExportPool(db.replica.pool.Config(), cfg); err != nil {
			s.pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// newExportPool returns a pool for exports configured like base.
func newExportPool(base *pgxpool.Config, cfg ExportConfig) (*pgxpool.Pool, error) {
	pc := base.Copy()
	pc.MaxConns = cfg.MaxConns
	pc.MinConns = 0
	pc.ConnConfig.RuntimeParams["statement_timeout"] = "0"
	pc.ConnConfig.RuntimeParams["application_name"] = "holdfast-export"
	// An export runs two statements; pgx's caches of 512 preallocated
	// entries each would be most of what each concurrent export holds.
	pc.ConnConfig.StatementCacheCapacity = exportStatements
	pc.ConnConfig.DescriptionCacheCapacity = exportStatements
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open export pool: %w", err)
	}
	return pool, nil
}

// Close closes the export pools, waiting for exports in progress to
// release their connections.
func (s *ExportService) Close() {
	if s.replica != nil {
		s.replica.Close()
	}
	s.pool.Close()
}

// Stat returns the export pool's statistics.
func (s *ExportService) Stat() *pgxpool.Stat { return s.pool.Stat() }

// ExportQuery reads an account's entries oldest first, with the transfer's
// currency, description and the other side's account. The join on tenant
// keeps another tenant's transfers out even if ids were shared. Parameters:
// $1 tenant id, $2 account id, $3 the entry id to start after (0: all),
// $4 and $5 the from and to times (NULL: unbounded). Exported so that
// benchmarks can run the very same query through other clients.
const ExportQuery = `SELECT e.id, e.transfer_id, e.created_at, e.amount, t.currency,
		CASE WHEN e.amount < 0 THEN t.credit_account_id ELSE t.debit_account_id END,
		t.description, e.balance_after
	FROM entries e JOIN transfers t ON t.tenant_id = $1 AND t.id = e.transfer_id
	WHERE e.account_id = $2 AND e.id > $3
		AND ($4::timestamptz IS NULL OR e.created_at >= $4)
		AND ($5::timestamptz IS NULL OR e.created_at < $5)
	ORDER BY e.id`

// ExportEntries calls fn with each entry of the tenant's account that q
// selects, oldest first, as it reads them: rows are read off the wire one at
// a time, so while fn blocks (on a slow client) no more are read. The Row
// is reused: fn must not keep it. An error from fn stops the export, cancels
// the query and is returned wrapped. Errors: ENOTFOUND for an account
// unknown to the tenant (before fn is ever called), the context's error when
// it ends.
func (s *ExportService) ExportEntries(ctx context.Context, tenantID, accountID string, q export.Query, fn func(*export.Row) error) error {
	if holdfast.ValidID("account id", accountID) != nil {
		return holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	accountID = holdfast.CanonicalID(accountID)
	// Cancelling before the rows close makes pgx drop the connection instead
	// of reading the rest of the result.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := s.acquireOwned(ctx, tenantID, accountID)
	if holdfast.ErrorCode(err) == holdfast.ENOTFOUND {
		return err
	} else if err != nil {
		return fmt.Errorf("export entries: %w", err)
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, ExportQuery, tenantID, accountID, q.After, nullTime(q.From), nullTime(q.To))
	if err != nil {
		return fmt.Errorf("export entries: %w", contextError(ctx, err))
	}
	defer rows.Close()
	var r export.Row
	for rows.Next() {
		if err := rows.Scan(&r.EntryID, &r.TransferID, &r.Time, &r.Amount, &r.Currency,
			&r.CounterpartyAccountID, &r.Description, &r.RunningBalance); err != nil {
			return fmt.Errorf("export entries: %w", err)
		}
		r.Time = r.Time.UTC()
		if err := fn(&r); err != nil {
			cancel()
			return fmt.Errorf("export entries: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export entries: %w", contextError(ctx, err))
	}
	return nil
}

// nullTime returns nil for the zero time, so the query does not restrict.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// acquireOwned returns a connection for an export of the tenant's account,
// once it has checked that the account is the tenant's: on the replica
// while it is usable, on the primary if not or if the replica fails the
// check (nothing has been sent to the client yet). Errors: ENOTFOUND for
// an account unknown to the tenant, or the database's, classified.
func (s *ExportService) acquireOwned(ctx context.Context, tenantID, accountID string) (*pgxpool.Conn, error) {
	if s.replica != nil && s.db.replica.use() {
		conn, err := checkOwned(ctx, s.replica, tenantID, accountID)
		// Not found on the replica may be lag: the primary decides.
		if !s.db.replica.failed(ctx, err) && holdfast.ErrorCode(err) != holdfast.ENOTFOUND {
			return conn, err
		}
	}
	return checkOwned(ctx, s.pool, tenantID, accountID)
}

// checkOwned acquires a connection of pool and checks on it that the
// account is the tenant's; it returns the connection only if it is.
func checkOwned(ctx context.Context, pool *pgxpool.Pool, tenantID, accountID string) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, contextError(ctx, err)
	}
	// An account never changes tenant, so the check needs no shared snapshot.
	var owned bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2)", tenantID, accountID).Scan(&owned); err != nil {
		conn.Release()
		return nil, contextError(ctx, err)
	}
	if !owned {
		conn.Release()
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	return conn, nil
}
