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
// pool, so long exports can never take the connections transfers need.
type ExportService struct {
	pool *pgxpool.Pool
}

// NewExportService returns an export service with a pool configured like
// db's but sized by cfg and without db's statement timeout (an export of
// millions of rows runs for minutes; it ends when its context does). The
// pool connects lazily. Close it when done.
func NewExportService(db *DB, cfg ExportConfig) (*ExportService, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc := db.Pool.Config().Copy()
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
	return &ExportService{pool: pool}, nil
}

// Close closes the export pool, waiting for exports in progress to release
// their connections.
func (s *ExportService) Close() { s.pool.Close() }

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
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("export entries: %w", contextError(ctx, err))
	}
	defer conn.Release()
	// An account never changes tenant, so the check needs no shared snapshot.
	var owned bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND id = $2)", tenantID, accountID).Scan(&owned); err != nil {
		return fmt.Errorf("export entries: %w", contextError(ctx, err))
	}
	if !owned {
		return holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
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
