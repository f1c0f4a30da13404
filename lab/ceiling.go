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

// PrepareCeiling creates the table RawBatch writes its events to: a copy of
// the outbox's shape and indexes, so that the ceiling pays what an outbox
// insert costs without feeding Holdfast's relay (which would then publish
// the ceiling's events while the ceiling runs, and slow it down).
func PrepareCeiling(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS lab_ceiling_outbox (LIKE outbox INCLUDING ALL)")
	return err
}

// RawBatch writes a batch of transfers with the fewest statements the schema
// allows and no HTTP, no queue, no per-request work: the ceiling that
// Holdfast's group commit is compared with. One transaction that writes
// what Holdfast's batch writes: lock the accounts in id order, store the
// idempotency keys with their responses, insert transfers, entries and the
// batch's transfer.posted events as one packed outbox row, as Holdfast's
// writer does (the event log's contract: the event is written with the
// change; see PrepareCeiling), update each balance once, commit. It skips a transfer that
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
		postgres.UUIDArray(list), tenant)
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
		docs, eventIDs        = make([][]byte, 0, n), make([]string, 0, n)
		outcomes              = make([][]byte, 0, n)
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
		doc := fmt.Appendf(nil, `{"id":%q,"tenant_id":%q,"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":%q,"description":"","created_at":%q}`,
			tid, tenant, t.Debit, t.Credit, t.Amount, currency, now.Format(time.RFC3339Nano))
		docs, eventIDs = append(docs, doc), append(eventIDs, uuid.Must(uuid.NewV7()).String())
		outcomes = append(outcomes, fmt.Appendf(nil, `{"result":[%s]}`, doc))
		tids, debits, credits, amounts = append(tids, tid), append(debits, t.Debit), append(credits, t.Credit), append(amounts, t.Amount)
		eAcct, eTransfer = append(eAcct, t.Debit, t.Credit), append(eTransfer, tid, tid)
		eAmount, eAfter = append(eAmount, -t.Amount, t.Amount), append(eAfter, balance[t.Debit], balance[t.Credit])
	}
	type step struct {
		sql  string
		args []any
	}
	steps := []step{
		{`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, outcome)
			SELECT $1, k, f, $3, o FROM unnest($2::text[], $4::bytea[], $5::bytea[]) AS x(k, f, o)`, []any{tenant, postgres.TextArray(keys), now, postgres.ByteaArray(fps), postgres.ByteaArray(outcomes)}},
		{`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
			SELECT $1, t, d, c, a, $6, '', $7 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[]) AS x(t, d, c, a)`,
			[]any{tenant, postgres.UUIDArray(tids), postgres.UUIDArray(debits), postgres.UUIDArray(credits), postgres.Int8Array(amounts), currency, now}},
		{`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
			SELECT a, t, am, af, $5 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[]) AS x(a, t, am, af)`,
			[]any{postgres.UUIDArray(eAcct), postgres.UUIDArray(eTransfer), postgres.Int8Array(eAmount), postgres.Int8Array(eAfter), now}},
	}
	if len(eventIDs) > 0 { // no events, no outbox row
		steps = append(steps, step{`INSERT INTO lab_ceiling_outbox (id, tenant_id, type, occurred_at, data, topic, event_ids, event_data)
			VALUES ($1, $2, 'transfer.posted', $3, '', 'events', $4::uuid[], $5::bytea[])`,
			[]any{uuid.Must(uuid.NewV7()).String(), tenant, now, postgres.UUIDArray(eventIDs), postgres.ByteaArray(docs)}})
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
	if _, err := tx.Exec(ctx, `UPDATE accounts a SET balance = v.b FROM unnest($1::uuid[], $2::bigint[]) AS v(id, b) WHERE a.id = v.id`, postgres.UUIDArray(bIDs), postgres.Int8Array(bVals)); err != nil {
		return 0, fmt.Errorf("raw batch: %w", err)
	}
	return len(tids), tx.Commit(ctx)
}
