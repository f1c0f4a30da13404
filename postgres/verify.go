package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// VerifyLedger checks a tenant's ledger against its invariants, from one
// snapshot: the balances sum to zero (money is only moved, never made), no
// account's available balance (posted less pending debits) is below its
// overdraft limit, nor its balance with pending credits above its
// max_balance, the holds are sound (see verifyHolds), each balance equals the sum
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
		count(*) FILTER (WHERE NOT allow_overdraft AND balance - pending_debits < -overdraft_limit
			OR max_balance IS NOT NULL AND balance + pending_credits > max_balance)
		FROM accounts WHERE tenant_id = $1`, tenant).Scan(&sum, &negative)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT count(*) FROM accounts a
		LEFT JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS s FROM entries e WHERE e.account_id = a.id) s ON true
		LEFT JOIN LATERAL (SELECT balance_after, pending_debits_after, pending_credits_after FROM entries e
			WHERE e.account_id = a.id ORDER BY id DESC LIMIT 1) l ON true
		WHERE a.tenant_id = $1 AND (a.balance <> s.s OR a.balance <> coalesce(l.balance_after, 0)
			OR a.pending_debits <> coalesce(l.pending_debits_after, 0) OR a.pending_credits <> coalesce(l.pending_credits_after, 0))`, tenant).Scan(&mismatched)
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
			(e.account_id = t.debit_account_id AND e.amount = -t.moved) OR
			(e.account_id = t.credit_account_id AND e.amount = t.moved)) AS good
		FROM (SELECT *, CASE WHEN pending OR status <> 'posted' THEN 0 ELSE amount END AS moved FROM transfers) t
		LEFT JOIN entries e ON e.transfer_id = t.id
		WHERE t.tenant_id = $1 GROUP BY t.tenant_id, t.id) x
		WHERE n <> 2 OR good <> 2`, tenant).Scan(&badTransfers)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	if sum != 0 || negative != 0 || mismatched != 0 || misordered != 0 || badTransfers != 0 {
		return fmt.Errorf("ledger inconsistent: sum of balances %d (want 0), %d beyond their limits, %d balance≠entries, %d entries whose running balance is not their account's sum up to them, %d transfers without their two entries",
			sum, negative, mismatched, misordered, badTransfers)
	}
	return verifyHolds(ctx, tx, tenant)
}

// verifyHolds checks the holds of a tenant: each account's pending totals
// are the sums of its pending holds; every hold is resolved at most once,
// by a transfer of its status, and is pending exactly when nothing resolved
// it; no hold was posted at or after its timeout; a post took at most what
// was held, and a void or expiry released all of it.
func verifyHolds(ctx context.Context, tx pgx.Tx, tenant string) error {
	var pendingOff, unsound, lateOrOver int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM accounts a
		LEFT JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS d FROM transfers t
			WHERE t.tenant_id = a.tenant_id AND t.debit_account_id = a.id AND t.status = 'pending') d ON true
		LEFT JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS c FROM transfers t
			WHERE t.tenant_id = a.tenant_id AND t.credit_account_id = a.id AND t.status = 'pending') c ON true
		WHERE a.tenant_id = $1 AND (a.pending_debits <> d.d OR a.pending_credits <> c.c)`, tenant).Scan(&pendingOff)
	if err != nil {
		return fmt.Errorf("verify holds: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT count(*) FROM transfers h
		LEFT JOIN LATERAL (SELECT count(*) AS n, min(r.status) AS status FROM transfers r
			WHERE r.tenant_id = h.tenant_id AND r.pending_id = h.id) r ON true
		WHERE h.tenant_id = $1 AND h.pending AND NOT (
			h.status = 'pending' AND r.n = 0 OR h.status <> 'pending' AND r.n = 1 AND r.status = h.status)`, tenant).Scan(&unsound)
	if err != nil {
		return fmt.Errorf("verify holds: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT count(*) FROM transfers r JOIN transfers h ON h.tenant_id = r.tenant_id AND h.id = r.pending_id
		WHERE r.tenant_id = $1 AND (NOT h.pending
			OR r.status = 'posted' AND (r.amount > h.amount OR h.expires_at IS NOT NULL AND r.created_at >= h.expires_at)
			OR r.status <> 'posted' AND r.amount <> h.amount
			OR r.status = 'expired' AND (h.expires_at IS NULL OR r.created_at < h.expires_at)
			OR r.debit_account_id <> h.debit_account_id OR r.credit_account_id <> h.credit_account_id)`, tenant).Scan(&lateOrOver)
	if err != nil {
		return fmt.Errorf("verify holds: %w", err)
	}
	if pendingOff != 0 || unsound != 0 || lateOrOver != 0 {
		return fmt.Errorf("holds inconsistent: %d accounts whose pending totals are not their pending holds', %d holds resolved other than once with their status, %d resolutions late, too large or on other accounts",
			pendingOff, unsound, lateOrOver)
	}
	return nil
}
