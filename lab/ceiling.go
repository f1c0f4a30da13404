package lab

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/postgres"
)

// RawTransfer is one transfer of a raw batch.
type RawTransfer struct {
	Key           string // idempotency key
	Debit, Credit string
	Amount        int64
}

// RawBatch writes a batch of transfers with the fewest statements the schema
// allows and no HTTP, no queue, no per-request work: the ceiling that
// Holdfast's group commit is compared with. One transaction: store the
// idempotency keys, lock the accounts in id order, insert transfers and
// entries, update each balance once, commit. It skips a transfer that
// would overdraw or names an account the tenant does not have, and returns
// how many it applied.
func RawBatch(ctx context.Context, pool *pgxpool.Pool, tenant, currency string, batch []RawTransfer) (int, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	ids := map[string]struct{}{}
	for _, t := range batch {
		ids[t.Debit], ids[t.Credit] = struct{}{}, struct{}{}
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	sort.Strings(list)
	rows, _ := tx.Query(ctx, "SELECT id, balance, allow_overdraft FROM accounts WHERE tenant_id = $2 AND id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
		postgres.UUIDs(list), tenant)
	balance, overdraft := map[string]int64{}, map[string]bool{}
	var id string
	var b int64
	var od bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &b, &od}, func() error { balance[id], overdraft[id] = b, od; return nil }); err != nil {
		return 0, err
	}
	n := len(batch)
	now := time.Now().UTC()
	var (
		keys, fps             = make([]string, 0, n), make([][]byte, 0, n)
		tids, debits, credits = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		amounts               = make([]int64, 0, n)
		eAcct, eTransfer      = make([]string, 0, 2*n), make([]string, 0, 2*n)
		eAmount, eAfter       = make([]int64, 0, 2*n), make([]int64, 0, 2*n)
	)
	for _, t := range batch {
		_, debitKnown := balance[t.Debit]
		_, creditKnown := balance[t.Credit]
		if !debitKnown || !creditKnown || !overdraft[t.Debit] && balance[t.Debit] < t.Amount {
			continue // an unknown account (or another tenant's), or not enough money
		}
		balance[t.Debit] -= t.Amount
		balance[t.Credit] += t.Amount
		tid := uuid.Must(uuid.NewV7()).String()
		fp := sha256.Sum256([]byte(t.Key))
		keys, fps = append(keys, t.Key), append(fps, fp[:])
		tids, debits, credits, amounts = append(tids, tid), append(debits, t.Debit), append(credits, t.Credit), append(amounts, t.Amount)
		eAcct, eTransfer = append(eAcct, t.Debit, t.Credit), append(eTransfer, tid, tid)
		eAmount, eAfter = append(eAmount, -t.Amount, t.Amount), append(eAfter, balance[t.Debit], balance[t.Credit])
	}
	steps := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
			SELECT $1, k, f, $3, 201, 'application/json', '{}' FROM unnest($2::text[], $4::bytea[]) AS x(k, f)`, []any{tenant, keys, now, fps}},
		{`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
			SELECT $1, t, d, c, a, $6, '', $7 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[]) AS x(t, d, c, a)`,
			[]any{tenant, postgres.UUIDs(tids), postgres.UUIDs(debits), postgres.UUIDs(credits), amounts, currency, now}},
		{`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
			SELECT a, t, am, af, $5 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[]) AS x(a, t, am, af)`,
			[]any{postgres.UUIDs(eAcct), postgres.UUIDs(eTransfer), eAmount, eAfter, now}},
	}
	for _, s := range steps {
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return 0, fmt.Errorf("raw batch: %w", err)
		}
	}
	bIDs, bVals := make([]string, 0, len(balance)), make([]int64, 0, len(balance))
	for id, v := range balance {
		bIDs, bVals = append(bIDs, id), append(bVals, v)
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts a SET balance = v.b FROM unnest($1::uuid[], $2::bigint[]) AS v(id, b) WHERE a.id = v.id`, postgres.UUIDs(bIDs), bVals); err != nil {
		return 0, fmt.Errorf("raw batch: %w", err)
	}
	return len(tids), tx.Commit(ctx)
}
