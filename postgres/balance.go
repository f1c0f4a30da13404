package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// BalanceService implements holdfast.BalanceService.
type BalanceService struct{ db *DB }

var _ holdfast.BalanceService = (*BalanceService)(nil)

// NewBalanceService returns a BalanceService on db.
func NewBalanceService(db *DB) *BalanceService { return &BalanceService{db: db} }

// balanceAtSQL reads the balance of account $2 of tenant $1 at each moment
// of $3: for each, one seek in entries_account_time for the last entry at
// or before it (its running balance and pending totals).
const balanceAtSQL = `SELECT m.at, a.currency, coalesce(e.balance_after, 0), coalesce(e.pending_debits_after, 0),
		coalesce(e.pending_credits_after, 0)
	FROM accounts a CROSS JOIN %s AS m(at)
	LEFT JOIN LATERAL (SELECT balance_after, pending_debits_after, pending_credits_after FROM entries
		WHERE account_id = a.id AND created_at <= m.at ORDER BY created_at DESC, id DESC LIMIT 1) e ON true
	WHERE a.tenant_id = $1 AND a.id = $2 ORDER BY m.at`

// BalanceAt reads the balance at a moment from a snapshot.
func (s *BalanceService) BalanceAt(ctx context.Context, tenantID, accountID string, at time.Time) (*holdfast.Balance, error) {
	if holdfast.ValidID("account id", accountID) != nil {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	id := holdfast.CanonicalID(accountID)
	rows, _ := s.db.Pool.Query(ctx, fmt.Sprintf(balanceAtSQL, "(VALUES ($3::timestamptz))"), tenantID, id, at)
	b, err := pgx.CollectExactlyOneRow(rows, scanBalance(id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	if err != nil {
		return nil, fmt.Errorf("balance at: %w", contextError(ctx, err))
	}
	return b, nil
}

// BalanceHistory streams the balance at each point of h from one snapshot:
// a seek per point, never a scan of the account's entries.
func (s *BalanceService) BalanceHistory(ctx context.Context, tenantID, accountID string, h holdfast.BalanceHistory, fn func(*holdfast.Balance) error) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if holdfast.ValidID("account id", accountID) != nil {
		return holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	id := holdfast.CanonicalID(accountID)
	tx, err := s.db.beginAccountRead(ctx, tenantID, id)
	if holdfast.ErrorCode(err) == holdfast.ENOTFOUND {
		return err
	} else if err != nil {
		return fmt.Errorf("balance history: %w", err)
	}
	defer tx.Rollback(ctx)
	// Seconds, not '1 day': a day is 86,400 s whatever the session's time zone.
	series := "generate_series($3::timestamptz, $4::timestamptz, make_interval(secs => $5))"
	rows, err := tx.Query(ctx, fmt.Sprintf(balanceAtSQL, series), tenantID, id, h.From, h.To, h.Interval.Seconds())
	if err != nil {
		return fmt.Errorf("balance history: %w", contextError(ctx, err))
	}
	defer rows.Close()
	scan := scanBalance(id)
	for rows.Next() {
		b, err := scan(rows)
		if err != nil {
			return fmt.Errorf("balance history: %w", err)
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("balance history: %w", contextError(ctx, err))
	}
	return nil
}

// scanBalance returns a row scanner for balances of the account.
func scanBalance(accountID string) pgx.RowToFunc[*holdfast.Balance] {
	return func(r pgx.CollectableRow) (*holdfast.Balance, error) {
		b := &holdfast.Balance{AccountID: accountID}
		if err := r.Scan(&b.At, &b.Currency, &b.Posted, &b.PendingDebits, &b.PendingCredits); err != nil {
			return nil, err
		}
		b.At = b.At.UTC()
		b.Available = b.Posted - b.PendingDebits
		b.CurrencyExponent, _ = holdfast.CurrencyExponent(b.Currency)
		return b, nil
	}
}
