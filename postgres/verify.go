package postgres

import (
	"context"
	"fmt"
)

// VerifyLedger checks a tenant's ledger against its invariants, from one
// snapshot: the balances sum to zero (money is only moved, never made), no
// account that may not go negative is negative, each balance equals the sum
// of its entries and its last running balance, every entry's running balance
// is the sum of its account's entries up to it (entries are in the order
// their balances were applied: pipelined group-commit batches insert theirs
// only once the batch before has committed), and each transfer has exactly
// its two entries. It returns an error describing any violation. It reads
// every entry of the tenant: an audit tool, not a request path.
func VerifyLedger(ctx context.Context, db *DB, tenant string) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	var sum int64
	var negative, mismatched, badTransfers int
	err = tx.QueryRow(ctx, `SELECT coalesce(sum(balance), 0)::bigint,
		count(*) FILTER (WHERE balance < 0 AND NOT allow_overdraft)
		FROM accounts WHERE tenant_id = $1`, tenant).Scan(&sum, &negative)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT count(*) FROM accounts a
		LEFT JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS s FROM entries e WHERE e.account_id = a.id) s ON true
		LEFT JOIN LATERAL (SELECT balance_after FROM entries e WHERE e.account_id = a.id ORDER BY id DESC LIMIT 1) l ON true
		WHERE a.tenant_id = $1 AND (a.balance <> s.s OR a.balance <> coalesce(l.balance_after, 0))`, tenant).Scan(&mismatched)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	var misordered int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT balance_after, sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running FROM entries
		WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)) e
		WHERE balance_after <> running`, tenant).Scan(&misordered)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT count(e.id) AS n, count(e.id) FILTER (WHERE
			(e.account_id = t.debit_account_id AND e.amount = -t.amount) OR
			(e.account_id = t.credit_account_id AND e.amount = t.amount)) AS good
		FROM transfers t LEFT JOIN entries e ON e.transfer_id = t.id
		WHERE t.tenant_id = $1 GROUP BY t.tenant_id, t.id) x
		WHERE n <> 2 OR good <> 2`, tenant).Scan(&badTransfers)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	if sum != 0 || negative != 0 || mismatched != 0 || misordered != 0 || badTransfers != 0 {
		return fmt.Errorf("ledger inconsistent: sum of balances %d (want 0), %d negative, %d balance≠entries, %d entries whose running balance is not their account's sum up to them, %d transfers without their two entries",
			sum, negative, mismatched, misordered, badTransfers)
	}
	return nil
}
