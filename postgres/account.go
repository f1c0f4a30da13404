package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// AccountService implements holdfast.AccountService.
type AccountService struct{ db *DB }

var _ holdfast.AccountService = (*AccountService)(nil)

// NewAccountService returns an AccountService on db.
func NewAccountService(db *DB) *AccountService { return &AccountService{db: db} }

// CreateAccount creates an account with a zero balance, and stores it as
// the claim's outcome in the same transaction.
func (s *AccountService) CreateAccount(ctx context.Context, tenantID string, in holdfast.AccountCreate, claim *holdfast.IdempotencyClaim) (*holdfast.Account, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	a := &holdfast.Account{
		ID:             uuid.Must(uuid.NewV7()).String(),
		TenantID:       tenantID,
		Currency:       in.Currency,
		AllowOverdraft: in.AllowOverdraft,
		OverdraftLimit: in.OverdraftLimit,
		MaxBalance:     in.MaxBalance,
		Metadata:       in.Metadata,
		CreatedAt:      s.db.now(),
	}
	if a.Metadata == nil {
		a.Metadata = map[string]string{}
	}
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("create account: %w", contextError(ctx, err))
	}
	defer tx.Rollback(ctx)
	a.Derive()
	_, err = tx.Exec(ctx, `INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, overdraft_limit, max_balance, metadata, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, a.ID, tenantID, a.Currency, a.AllowOverdraft, a.OverdraftLimit, a.MaxBalance, in.MetadataJSON(), a.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("create account: %w", contextError(ctx, err))
	}
	event, err := newOutboxEvent(tenantID, holdfast.EventAccountCreated, a.CreatedAt, a)
	if err != nil {
		return nil, err
	}
	if err := insertOutbox(ctx, tx, event); err != nil {
		return nil, fmt.Errorf("create account: %w", contextError(ctx, err))
	}
	if err := completeClaim(ctx, tx, claim, a); err != nil {
		return nil, contextError(ctx, err)
	}
	if err := commit(ctx, tx); err != nil {
		return nil, fmt.Errorf("create account: %w", err)
	}
	return a, nil
}

const accountColumns = "id, tenant_id, currency, allow_overdraft, balance, metadata, created_at, pending_debits, pending_credits, overdraft_limit, max_balance"

func scanAccount(r pgx.CollectableRow) (*holdfast.Account, error) {
	var a holdfast.Account
	var meta []byte
	if err := r.Scan(&a.ID, &a.TenantID, &a.Currency, &a.AllowOverdraft, &a.Balance, &meta, &a.CreatedAt,
		&a.PendingDebits, &a.PendingCredits, &a.OverdraftLimit, &a.MaxBalance); err != nil {
		return nil, err
	}
	a.Derive()
	a.CreatedAt = a.CreatedAt.UTC()
	if err := json.Unmarshal(meta, &a.Metadata); err != nil {
		return nil, fmt.Errorf("account %s metadata: %w", a.ID, err)
	}
	return &a, nil
}

// FindAccount reads an account from a snapshot; it never waits for writers.
func (s *AccountService) FindAccount(ctx context.Context, tenantID, id string) (*holdfast.Account, error) {
	if err := holdfast.ValidID("account id", id); err != nil {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	rows, _ := s.db.Pool.Query(ctx, "SELECT "+accountColumns+" FROM accounts WHERE tenant_id = $1 AND id = $2", tenantID, id)
	a, err := pgx.CollectExactlyOneRow(rows, scanAccount)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "account not found")
	}
	if err != nil {
		return nil, fmt.Errorf("find account: %w", contextError(ctx, err))
	}
	return a, nil
}

// ListAccounts lists the tenant's accounts in creation order (ids are UUIDv7).
func (s *AccountService) ListAccounts(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.Account, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	after := "00000000-0000-0000-0000-000000000000"
	if page.Cursor != "" {
		if holdfast.ValidID("cursor", page.Cursor) != nil {
			return nil, "", holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
		after = page.Cursor
	}
	accounts, err := collectRead(ctx, s.db, scanAccount, "SELECT "+accountColumns+` FROM accounts
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, tenantID, after, page.Limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list accounts: %w", contextError(ctx, err))
	}
	next := ""
	if len(accounts) > page.Limit {
		accounts = accounts[:page.Limit]
		next = accounts[len(accounts)-1].ID
	}
	return accounts, next, nil
}

// UpdateAccountMetadata changes an account's metadata by key (see
// patchMetadata); balances are not touched.
func (s *AccountService) UpdateAccountMetadata(ctx context.Context, tenantID, id string, patch holdfast.MetadataPatch) (*holdfast.Account, error) {
	return patchMetadata(ctx, s.db, "account", "SELECT "+accountColumns+" FROM accounts WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
		"UPDATE accounts SET metadata = $3 WHERE tenant_id = $1 AND id = $2", tenantID, id, patch, scanAccount,
		func(a *holdfast.Account) *map[string]string { return &a.Metadata })
}

// patchMetadata changes the metadata of the tenant's row id (an account or
// a transfer, what) by key: it reads the row with selectSQL under its lock,
// so that concurrent patches of other keys all stay, applies patch to the
// metadata meta points to, and writes it with updateSQL ($1 tenant, $2 id,
// $3 the metadata). ENOTFOUND for a row not the tenant's; EINVALID for a
// result beyond the limits.
func patchMetadata[T any](ctx context.Context, db *DB, what, selectSQL, updateSQL, tenantID, id string, patch holdfast.MetadataPatch,
	scan pgx.RowToFunc[T], meta func(T) *map[string]string) (T, error) {
	var out T
	notFound := holdfast.Errorf(holdfast.ENOTFOUND, "%s not found", what)
	if holdfast.ValidID(what+" id", id) != nil {
		return out, notFound
	}
	id = holdfast.CanonicalID(id)
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, selectSQL, tenantID, id)
		row, err := pgx.CollectExactlyOneRow(rows, scan)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound
		}
		if err != nil {
			return err
		}
		m := meta(row)
		if *m, err = patch.Apply(*m); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, updateSQL, tenantID, id, holdfast.MetadataJSON(*m)); err != nil {
			return err
		}
		out = row
		return nil
	})
	var he *holdfast.Error
	if err != nil && !errors.As(err, &he) {
		err = fmt.Errorf("update %s metadata: %w", what, contextError(ctx, err))
	}
	return out, err
}
