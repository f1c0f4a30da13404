package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/postgres"
)

// rawTransfer is one transfer of a raw batch.
type rawTransfer struct {
	Key           string // idempotency key
	Debit, Credit string
	Amount        int64
}

// prepareCeiling creates the table rawBatch writes its events to: a copy of
// the outbox's shape and indexes, so that the ceiling pays what an outbox
// insert costs without feeding Holdfast's relay (which would then publish
// the ceiling's events while the ceiling runs, and slow it down).
func prepareCeiling(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS lab_ceiling_outbox (LIKE outbox INCLUDING ALL)")
	return err
}

// rawBatch writes a batch of transfers with the fewest statements the schema
// allows and no HTTP, no queue, no per-request work: the ceiling that
// Holdfast's group commit is compared with. One transaction that writes
// what Holdfast's batch writes: lock the accounts in id order, store the
// idempotency keys with their responses, insert transfers, entries and the
// batch's transfer.posted events as one packed outbox row, as Holdfast's
// writer does (the event log's contract: the event is written with the
// change; see prepareCeiling), update each balance once, commit. It skips a
// transfer that would overdraw or names an account the tenant does not
// have, and returns how many it applied.
func rawBatch(ctx context.Context, pool *pgxpool.Pool, tenant, currency string, batch []rawTransfer) (int, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	b, err := lockBatch(ctx, tx, tenant, batch)
	if err != nil {
		return 0, err
	}
	b.apply(tenant, currency, batch)
	for _, s := range b.statements(tenant, currency) {
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return 0, fmt.Errorf("raw batch: %w", err)
		}
	}
	bIDs, bVals := make([]string, 0, len(b.balance)), make([]int64, 0, len(b.balance))
	for id, v := range b.balance {
		bIDs, bVals = append(bIDs, id), append(bVals, v)
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts a SET balance = v.b FROM unnest($1::uuid[], $2::bigint[]) AS v(id, b) WHERE a.id = v.id`, postgres.UUIDArray(bIDs), postgres.Int8Array(bVals)); err != nil {
		return 0, fmt.Errorf("raw batch: %w", err)
	}
	return len(b.tids), tx.Commit(ctx)
}

// rawRows are the rows a raw batch writes, column by column, and the
// balances of its accounts as its transfers leave them.
type rawRows struct {
	balance               map[string]int64
	overdraft             map[string]bool
	now                   time.Time
	keys, eventIDs        []string
	fps, docs, outcomes   [][]byte
	tids, debits, credits []string
	amounts               []int64
	eAcct, eTransfer      []string
	eAmount, eAfter       []int64
}

// lockBatch locks the batch's accounts of the tenant in id order and reads
// their balances.
func lockBatch(ctx context.Context, tx pgx.Tx, tenant string, batch []rawTransfer) (*rawRows, error) {
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
	b := &rawRows{balance: map[string]int64{}, overdraft: map[string]bool{}, now: time.Now().UTC()}
	var id string
	var bal int64
	var od bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &bal, &od}, func() error { b.balance[id], b.overdraft[id] = bal, od; return nil }); err != nil {
		return nil, err
	}
	return b, nil
}

// apply moves the money of every transfer the balances allow and makes
// its rows.
func (b *rawRows) apply(tenant, currency string, batch []rawTransfer) {
	for _, t := range batch {
		_, debitKnown := b.balance[t.Debit]
		_, creditKnown := b.balance[t.Credit]
		if !debitKnown || !creditKnown || !b.overdraft[t.Debit] && b.balance[t.Debit] < t.Amount {
			continue // an unknown account (or another tenant's), or not enough money
		}
		b.balance[t.Debit] -= t.Amount
		b.balance[t.Credit] += t.Amount
		tid := uuid.Must(uuid.NewV7()).String()
		fp := sha256.Sum256([]byte(t.Key))
		b.keys, b.fps = append(b.keys, t.Key), append(b.fps, fp[:])
		doc := fmt.Appendf(nil, `{"id":%q,"tenant_id":%q,"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":%q,"description":"","created_at":%q}`,
			tid, tenant, t.Debit, t.Credit, t.Amount, currency, b.now.Format(time.RFC3339Nano))
		b.docs, b.eventIDs = append(b.docs, doc), append(b.eventIDs, uuid.Must(uuid.NewV7()).String())
		b.outcomes = append(b.outcomes, fmt.Appendf(nil, `{"result":[%s]}`, doc))
		b.tids, b.debits, b.credits, b.amounts = append(b.tids, tid), append(b.debits, t.Debit), append(b.credits, t.Credit), append(b.amounts, t.Amount)
		b.eAcct, b.eTransfer = append(b.eAcct, t.Debit, t.Credit), append(b.eTransfer, tid, tid)
		b.eAmount, b.eAfter = append(b.eAmount, -t.Amount, t.Amount), append(b.eAfter, b.balance[t.Debit], b.balance[t.Credit])
	}
}

// rawStatement is one statement of a raw batch.
type rawStatement struct {
	sql  string
	args []any
}

// statements returns the inserts of the batch's rows: keys, transfers,
// entries and, if any transfer was applied, one outbox row of its events.
func (b *rawRows) statements(tenant, currency string) []rawStatement {
	now := b.now
	steps := []rawStatement{
		{`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, outcome)
			SELECT $1, k, f, $3, o FROM unnest($2::text[], $4::bytea[], $5::bytea[]) AS x(k, f, o)`, []any{tenant, postgres.TextArray(b.keys), now, postgres.ByteaArray(b.fps), postgres.ByteaArray(b.outcomes)}},
		{`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
			SELECT $1, t, d, c, a, $6, '', $7 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[]) AS x(t, d, c, a)`,
			[]any{tenant, postgres.UUIDArray(b.tids), postgres.UUIDArray(b.debits), postgres.UUIDArray(b.credits), postgres.Int8Array(b.amounts), currency, now}},
		{`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
			SELECT a, t, am, af, $5 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[]) AS x(a, t, am, af)`,
			[]any{postgres.UUIDArray(b.eAcct), postgres.UUIDArray(b.eTransfer), postgres.Int8Array(b.eAmount), postgres.Int8Array(b.eAfter), now}},
	}
	if len(b.eventIDs) > 0 { // no events, no outbox row
		steps = append(steps, rawStatement{`INSERT INTO lab_ceiling_outbox (id, tenant_id, type, occurred_at, data, topic, event_ids, event_data)
			VALUES ($1, $2, 'transfer.posted', $3, '', 'events', $4::uuid[], $5::bytea[])`,
			[]any{uuid.Must(uuid.NewV7()).String(), tenant, now, postgres.UUIDArray(b.eventIDs), postgres.ByteaArray(b.docs)}})
	}
	return steps
}

// rawBatchSize is the ceiling's transfers per transaction.
const rawBatchSize = 1000

// rawCeiling applies batches of rawBatchSize transfers with rawBatch from
// two goroutines (as many as Holdfast's committers) for the configured time.
// Its counts are in transfers (a failed batch counts all of its transfers as
// errors, a skipped transfer as failed); its latencies are per batch.
func rawCeiling(ctx context.Context, cfg transfersConfig, w workload) load.Result {
	if err := prepareCeiling(ctx, cfg.Pool); err != nil {
		fmt.Fprintf(cfg.Progress, "raw SQL ceiling: %v\n", err)
		return load.Result{Name: "raw SQL", Errors: 1}
	}
	run := time.Now().UnixNano()
	var applied, skipped, errs atomic.Int64
	lat := make([][]time.Duration, 2)
	var wg sync.WaitGroup
	deadline := time.Now().Add(cfg.Duration)
	start := time.Now()
	for g := range lat {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(run), uint64(g)))
			for i := 0; time.Now().Before(deadline); i++ {
				batch := make([]rawTransfer, rawBatchSize)
				for j := range batch {
					d, c := w.pick(rng)
					batch[j] = rawTransfer{Key: fmt.Sprintf("raw-%d-%d-%d-%d", run, g, i, j), Debit: d, Credit: c, Amount: int64(1 + rng.IntN(100))}
				}
				t0 := time.Now()
				n, err := rawBatch(ctx, cfg.Pool, cfg.Tenant, "USD", batch)
				if err != nil {
					if errs.Add(rawBatchSize) == rawBatchSize {
						fmt.Fprintf(cfg.Progress, "raw batch: %v\n", err)
					}
					continue
				}
				applied.Add(int64(n))
				skipped.Add(int64(len(batch) - n))
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	sent := applied.Load() + skipped.Load() + errs.Load()
	return load.Summarize(fmt.Sprintf("raw SQL, batches of %d", rawBatchSize), slices.Concat(lat...), sent, applied.Load(), skipped.Load(), errs.Load(), time.Since(start))
}
