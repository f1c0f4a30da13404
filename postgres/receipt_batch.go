package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// receiptCommitTimeout bounds a batch of uploads once it is sent: its
// callers wait for its outcome past their own deadlines (decision 0047).
const receiptCommitTimeout = 10 * time.Second

// QueueReceipts records uploads and their processing jobs in one
// transaction, as QueueReceipt would one after the other, in order: each
// receipt with its job and receipt.stored event, the tenants' stored bytes
// checked against quota upload by upload. out[i] and errs[i] are rs[i]'s
// own outcome: its receipt (as it is, for the same image again), or
// ENOTFOUND for an unknown transfer, EQUOTA past the quota; those refused
// change nothing. err is the batch's: then nothing was recorded, unless
// the connection broke during the commit (a retried PUT of the same image
// changes nothing, so the upload is safe to send again).
func (s *ReceiptStore) QueueReceipts(ctx context.Context, rs []*holdfast.Receipt, quota int64) (out []*holdfast.Receipt, errs []error, err error) {
	if len(rs) == 0 {
		return nil, nil, nil
	}
	now := s.db.now()
	ctx, cancel := context.WithTimeout(Patient(context.WithoutCancel(ctx)), receiptCommitTimeout)
	defer cancel()
	err = pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		b := &receiptBatch{tx: tx, rs: rs, quota: quota, now: now, out: make([]*holdfast.Receipt, len(rs)), errs: make([]error, len(rs))}
		if err := b.apply(ctx); err != nil {
			return err
		}
		out, errs = b.out, b.errs
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("queue receipts: %w", contextError(ctx, err))
	}
	return out, errs, nil
}

// receiptBatch is one transaction of uploads.
type receiptBatch struct {
	tx    pgx.Tx
	rs    []*holdfast.Receipt
	quota int64
	now   time.Time
	out   []*holdfast.Receipt
	errs  []error

	used, before map[string]int64 // each tenant's stored bytes: now, and when locked
	jobs         []outboxEvent
	stored       *packer
}

func (b *receiptBatch) apply(ctx context.Context) error {
	if err := b.lockUsage(ctx); err != nil {
		return err
	}
	known, err := b.transfers(ctx)
	if err != nil {
		return err
	}
	pending := make([]int, 0, len(b.rs))
	for i, r := range b.rs {
		if !known[receiptKey(r)] {
			b.errs[i] = holdfast.Errorf(holdfast.ENOTFOUND, "transfer not found")
			continue
		}
		pending = append(pending, i)
	}
	b.stored = newPacker(b.now)
	// A transfer uploaded to twice in one batch: the second upload goes in
	// a later round, against what the first left.
	for len(pending) > 0 {
		var round, later []int
		inRound := map[string]bool{}
		for _, i := range pending {
			if k := receiptKey(b.rs[i]); !inRound[k] {
				inRound[k] = true
				round = append(round, i)
			} else {
				later = append(later, i)
			}
		}
		if err := b.applyRound(ctx, round); err != nil {
			return err
		}
		pending = later
	}
	return b.finish(ctx)
}

func receiptKey(r *holdfast.Receipt) string { return r.TenantID + "/" + r.TransferID }

// lockUsage locks the batch's tenants' usage rows, in order (so batches in
// any replica cannot deadlock), and reads their stored bytes. Every upload
// of a tenant is checked while its row is locked, against every byte
// committed.
func (b *receiptBatch) lockUsage(ctx context.Context) error {
	var tenants []string
	for _, r := range b.rs {
		tenants = append(tenants, r.TenantID)
	}
	slices.Sort(tenants)
	tenants = slices.Compact(tenants)
	rows, _ := b.tx.Query(ctx, `INSERT INTO receipt_usage (tenant_id, bytes) SELECT t, 0 FROM unnest($1::uuid[]) AS t ORDER BY t
		ON CONFLICT (tenant_id) DO UPDATE SET bytes = receipt_usage.bytes RETURNING tenant_id::text, bytes`, UUIDArray(tenants))
	b.used, b.before = map[string]int64{}, map[string]int64{}
	var tenant string
	var bytes int64
	_, err := pgx.ForEachRow(rows, []any{&tenant, &bytes}, func() error {
		b.used[tenant], b.before[tenant] = bytes, bytes
		return nil
	})
	return err
}

// transfers returns which of the uploads' transfers exist, by receiptKey.
func (b *receiptBatch) transfers(ctx context.Context) (map[string]bool, error) {
	tenants, ids := make([]string, len(b.rs)), make([]string, len(b.rs))
	for i, r := range b.rs {
		tenants[i], ids[i] = r.TenantID, r.TransferID
	}
	rows, _ := b.tx.Query(ctx, `SELECT t.tenant_id::text, t.id::text FROM transfers t
		JOIN unnest($1::uuid[], $2::uuid[]) AS u(tenant, id) ON t.tenant_id = u.tenant AND t.id = u.id`, UUIDArray(tenants), UUIDArray(ids))
	known := map[string]bool{}
	var tenant, id string
	_, err := pgx.ForEachRow(rows, []any{&tenant, &id}, func() error {
		known[tenant+"/"+id] = true
		return nil
	})
	return known, err
}

// applyRound records uploads to distinct transfers: it reads their
// transfers' receipts, decides each upload in order, and writes the new
// and replaced receipts with one statement.
func (b *receiptBatch) applyRound(ctx context.Context, round []int) error {
	current, err := b.current(ctx, round)
	if err != nil {
		return err
	}
	var writes []int
	for _, i := range round {
		r := b.rs[i]
		cur := current[receiptKey(r)]
		if cur != nil && cur.OriginalKey == r.OriginalKey && cur.Status != holdfast.ReceiptFailed {
			b.out[i] = cur // the same image again: nothing to do
			continue
		}
		var replaced int64
		if cur != nil {
			replaced = cur.Size
		}
		if cur != nil && cur.OriginalKey == r.OriginalKey {
			replaced = r.Size // a failed one again: the same bytes
		}
		if err := holdfast.CheckReceiptQuota(b.used[r.TenantID], replaced, r.Size, b.quota); err != nil {
			b.errs[i] = err
			continue
		}
		b.used[r.TenantID] += r.Size - replaced
		writes = append(writes, i)
	}
	if len(writes) == 0 {
		return nil
	}
	return b.write(ctx, writes)
}

// current returns the receipts the round's transfers have now, by receiptKey.
func (b *receiptBatch) current(ctx context.Context, round []int) (map[string]*holdfast.Receipt, error) {
	tenants, ids := make([]string, len(round)), make([]string, len(round))
	for j, i := range round {
		tenants[j], ids[j] = b.rs[i].TenantID, b.rs[i].TransferID
	}
	rows, _ := b.tx.Query(ctx, "SELECT "+receiptColumns+` FROM receipts
		JOIN unnest($1::uuid[], $2::uuid[]) AS u(tenant, transfer) ON tenant_id = u.tenant AND transfer_id = u.transfer`,
		UUIDArray(tenants), UUIDArray(ids))
	list, err := pgx.CollectRows(rows, scanReceipt)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*holdfast.Receipt, len(list))
	for _, r := range list {
		out[receiptKey(r)] = r
	}
	return out, nil
}

// write inserts or replaces the receipts of uploads to distinct transfers
// and queues their jobs and events.
func (b *receiptBatch) write(ctx context.Context, writes []int) error {
	n := len(writes)
	ids, tenants, transfers, keys, formats := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	widths, heights, sizes := make([]int32, n), make([]int32, n), make([]int64, n)
	for j, i := range writes {
		r := b.rs[i]
		ids[j], tenants[j], transfers[j], keys[j], formats[j] = uuid.Must(uuid.NewV7()).String(), r.TenantID, r.TransferID, r.OriginalKey, r.Format
		widths[j], heights[j], sizes[j] = int32(r.Width), int32(r.Height), r.Size
	}
	rows, _ := b.tx.Query(ctx, `INSERT INTO receipts (id, tenant_id, transfer_id, status, original_key, format, width, height, size, created_at, updated_at)
		SELECT id, tenant, transfer, 'queued', key, format, width, height, size, $9, $9
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::int8[])
			AS u(id, tenant, transfer, key, format, width, height, size)
		ON CONFLICT (tenant_id, transfer_id) DO UPDATE SET status = 'queued', original_key = excluded.original_key,
			format = excluded.format, width = excluded.width, height = excluded.height, size = excluded.size,
			variants = '{}', attempts = 0, last_error = '', updated_at = excluded.updated_at
		RETURNING `+receiptColumns, UUIDArray(ids), UUIDArray(tenants), UUIDArray(transfers), TextArray(keys), TextArray(formats),
		Int4Array(widths), Int4Array(heights), Int8Array(sizes), b.now)
	list, err := pgx.CollectRows(rows, scanReceipt)
	if err != nil {
		return err
	}
	byKey := make(map[string]*holdfast.Receipt, len(list))
	for _, r := range list {
		byKey[receiptKey(r)] = r
	}
	for _, i := range writes {
		r := byKey[receiptKey(b.rs[i])]
		if r == nil {
			return fmt.Errorf("receipt for transfer %s not returned", b.rs[i].TransferID) // unreachable
		}
		b.out[i] = r
		jobID := uuid.Must(uuid.NewV7()).String()
		job, _ := json.Marshal(holdfast.ReceiptJob{ID: jobID, TenantID: r.TenantID, ReceiptID: r.ID, OriginalKey: r.OriginalKey})
		b.jobs = append(b.jobs, outboxEvent{id: jobID, tenantID: r.TenantID, typ: "receipt.job", occurredAt: b.now, data: job, topic: holdfast.TopicJobs})
		if err := b.stored.add(r.TenantID, holdfast.EventReceiptStored, receiptEventData(r)); err != nil {
			return err
		}
	}
	return nil
}

// finish writes the tenants' new stored bytes and the outbox rows: a job
// a receipt (one message each in the work queue), and the receipt.stored
// events packed a row per tenant (decision 0015).
func (b *receiptBatch) finish(ctx context.Context) error {
	var tenants []string
	var deltas []int64
	for t, used := range b.used {
		if d := used - b.before[t]; d != 0 {
			tenants, deltas = append(tenants, t), append(deltas, d)
		}
	}
	batch := &pgx.Batch{}
	if len(tenants) > 0 {
		batch.Queue(`UPDATE receipt_usage u SET bytes = u.bytes + d.delta FROM unnest($1::uuid[], $2::int8[]) AS d(tenant, delta)
			WHERE u.tenant_id = d.tenant`, UUIDArray(tenants), Int8Array(deltas))
	}
	if len(b.jobs) > 0 {
		queueOutbox(batch, append(b.jobs, b.stored.done()...))
	}
	if batch.Len() == 0 {
		return nil
	}
	return b.tx.SendBatch(ctx, batch).Close()
}
