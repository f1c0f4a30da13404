package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SeedAccounts creates n accounts of the tenant in one transaction, each
// funded with funding from a fresh overdraft "equity" account through a real
// transfer and its two entries, so the ledger's invariants hold from the
// start. It returns the new accounts' ids. overdraft says whether the new
// accounts may go negative.
func SeedAccounts(ctx context.Context, pool *pgxpool.Pool, tenant, currency string, n int, funding int64, overdraft bool) ([]string, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	now := time.Now().UTC()
	equity := uuid.Must(uuid.NewV7()).String()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, balance, created_at)
		VALUES ($1, $2, $3, true, $4, $5)`, equity, tenant, currency, -funding*int64(n), now); err != nil {
		return nil, fmt.Errorf("seed equity: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, balance, created_at)
		SELECT id, $2, $3, $5, $4, $6 FROM unnest($1::uuid[]) AS id`, ids, tenant, currency, funding, overdraft, now); err != nil {
		return nil, fmt.Errorf("seed accounts: %w", err)
	}
	if funding == 0 {
		return ids, tx.Commit(ctx)
	}
	transfers := make([]string, n)
	for i := range transfers {
		transfers[i] = uuid.Must(uuid.NewV7()).String()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		SELECT $1, t, $3, a, $4, $5, 'funding', $6 FROM unnest($2::uuid[], $7::uuid[]) AS x(t, a)`,
		tenant, transfers, equity, funding, currency, now, ids); err != nil {
		return nil, fmt.Errorf("seed transfers: %w", err)
	}
	// The equity's entries, in order, with its running balance; then each account's.
	if _, err := tx.Exec(ctx, `INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		SELECT $1, t, -$3::bigint, -$3::bigint * o, $4 FROM unnest($2::uuid[]) WITH ORDINALITY AS x(t, o) ORDER BY o`,
		equity, transfers, funding, now); err != nil {
		return nil, fmt.Errorf("seed entries: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		SELECT a, t, $3, $3, $4 FROM unnest($1::uuid[], $2::uuid[]) AS x(a, t)`, ids, transfers, funding, now); err != nil {
		return nil, fmt.Errorf("seed entries: %w", err)
	}
	return ids, tx.Commit(ctx)
}

// Settle vacuums and analyzes the ledger's tables and the event log's queue
// tables (outbox, consumer_applied) and checkpoints, so that
// a measurement that follows pays for no earlier run's dead rows or dirty
// pages (autovacuum and checkpoints otherwise land in whichever run happens
// to be going).
func Settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) accounts, transfers, entries, idempotency_keys, outbox, consumer_applied"); err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	return nil
}
