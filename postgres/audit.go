package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// AuditService is the audit consumer group's effect, an append-only trail
// per tenant in which each record is hash-chained to the one before, and
// what reads and verifies it.
type AuditService struct {
	store *ConsumerStore
	db    *DB
	// Group is the consumer group whose applied sequences guard the effect. Default "audit".
	Group string
}

var _ holdfast.AuditService = (*AuditService)(nil)

// NewAuditService returns an AuditService on db.
func NewAuditService(db *DB) *AuditService {
	return &AuditService{store: NewConsumerStore(db), db: db, Group: "audit"}
}

// genesis is the previous hash of a tenant's first record.
var genesis = make([]byte, sha256.Size)

// chain returns the hash of a record: sha256(prev || event).
func chain(prev, event []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(event)
	return h.Sum(nil)
}

// ApplyEvents appends the events to their tenants' trails, exactly once:
// in the same transaction as the record of their stream sequences.
func (s *AuditService) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	return s.store.applyOnce(ctx, s.Group, batch, func(ctx context.Context, tx pgx.Tx, fresh []holdfast.EventDelivery) error {
		var tenants []string
		seen := map[string]bool{}
		for _, d := range fresh {
			if !seen[d.Event.TenantID] {
				seen[d.Event.TenantID] = true
				tenants = append(tenants, d.Event.TenantID)
			}
		}
		sort.Strings(tenants) // one lock order for every batch
		type head struct {
			seq  int64
			hash []byte
		}
		heads := make(map[string]*head, len(tenants))
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO audit_heads (tenant_id, seq, hash) SELECT t, 0, $2 FROM unnest($1::uuid[]) AS t ORDER BY t
			ON CONFLICT DO NOTHING`, UUIDArray(tenants), genesis)
		b.Queue(`SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE`,
			UUIDArray(tenants)).Query(func(rows pgx.Rows) error {
			var t string
			var h head
			_, err := pgx.ForEachRow(rows, []any{&t, &h.seq, &h.hash}, func() error {
				x := h
				heads[t] = &x
				return nil
			})
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		n := len(fresh)
		rt, rseq, rid, rtype := make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
		rat, rrec, rev, rprev, rhash := make([]time.Time, n), make([]time.Time, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
		now := s.db.now()
		for i, d := range fresh {
			h := heads[d.Event.TenantID]
			if h == nil {
				return fmt.Errorf("audit head of tenant %s was not locked", d.Event.TenantID)
			}
			h.seq++
			rprev[i] = h.hash
			h.hash = chain(h.hash, d.Raw)
			rt[i], rseq[i], rid[i], rtype[i] = d.Event.TenantID, h.seq, d.Event.ID, d.Event.Type
			rat[i], rrec[i], rev[i], rhash[i] = d.Event.OccurredAt, now, d.Raw, h.hash
		}
		ht, hseq, hhash := make([]string, 0, len(heads)), make([]int64, 0, len(heads)), make([][]byte, 0, len(heads))
		for _, t := range tenants {
			ht, hseq, hhash = append(ht, t), append(hseq, heads[t].seq), append(hhash, heads[t].hash)
		}
		w := &pgx.Batch{}
		w.Queue(`INSERT INTO audit_records (tenant_id, seq, event_id, type, occurred_at, recorded_at, event, prev_hash, hash)
			SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::bytea[], $8::bytea[], $9::bytea[])`,
			UUIDArray(rt), Int8Array(rseq), UUIDArray(rid), TextArray(rtype), TimestamptzArray(rat), TimestamptzArray(rrec), ByteaArray(rev), ByteaArray(rprev), ByteaArray(rhash))
		w.Queue(`UPDATE audit_heads h SET seq = v.seq, hash = v.hash
			FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS v(tenant_id, seq, hash) WHERE h.tenant_id = v.tenant_id`,
			UUIDArray(ht), Int8Array(hseq), ByteaArray(hhash))
		presizeSend(tx.Conn(), w)
		return tx.SendBatch(ctx, w).Close()
	})
}

// ListAudit lists the tenant's trail in order; the cursor is the last seq returned.
func (s *AuditService) ListAudit(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.AuditRecord, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	var after int64
	if page.Cursor != "" {
		after, err = strconv.ParseInt(page.Cursor, 10, 64)
		if err != nil || after < 0 || strconv.FormatInt(after, 10) != page.Cursor {
			return nil, "", holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
	}
	rows, _ := s.db.Pool.Query(ctx, `SELECT seq, event_id, type, occurred_at, recorded_at, event, prev_hash, hash
		FROM audit_records WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, tenantID, after, page.Limit+1)
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.AuditRecord, error) {
		var a holdfast.AuditRecord
		var ev, prev, hash []byte
		err := r.Scan(&a.Seq, &a.EventID, &a.Type, &a.OccurredAt, &a.RecordedAt, &ev, &prev, &hash)
		a.OccurredAt, a.RecordedAt = a.OccurredAt.UTC(), a.RecordedAt.UTC()
		a.Event, a.PrevHash, a.Hash = ev, hex.EncodeToString(prev), hex.EncodeToString(hash)
		return &a, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", contextError(ctx, err))
	}
	next := ""
	if len(list) > page.Limit {
		list = list[:page.Limit]
		next = strconv.FormatInt(list[len(list)-1].Seq, 10)
	}
	return list, next, nil
}

// VerifyAudit recomputes the tenant's whole chain from one snapshot,
// streaming it, and reports the first record that does not follow from the
// one before (a gap, a changed event, a changed link) or a head that does
// not match the last record.
func (s *AuditService) VerifyAudit(ctx context.Context, tenantID string) (*holdfast.AuditVerification, error) {
	tx, err := s.db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	defer tx.Rollback(ctx)
	v := &holdfast.AuditVerification{OK: true}
	prev := genesis
	rows, _ := tx.Query(ctx, `SELECT seq, event, prev_hash, hash FROM audit_records WHERE tenant_id = $1 ORDER BY seq`, tenantID)
	var seq int64
	var event, prevHash, hash []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &event, &prevHash, &hash}, func() error {
		if !v.OK {
			return nil
		}
		v.Records++
		switch {
		case seq != v.Records:
			v.OK, v.FirstBad, v.Reason = false, v.Records, fmt.Sprintf("record %d is missing", v.Records)
		case !bytes.Equal(prevHash, prev):
			v.OK, v.FirstBad, v.Reason = false, seq, "its prev_hash is not the hash of the record before it"
		case !bytes.Equal(hash, chain(prev, event)):
			v.OK, v.FirstBad, v.Reason = false, seq, "its hash does not match its event"
		}
		prev = bytes.Clone(hash)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	if !v.OK {
		v.HeadHash = ""
		return v, nil
	}
	var headSeq int64
	var headHash []byte
	err = tx.QueryRow(ctx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", tenantID).Scan(&headSeq, &headHash)
	if err != nil && err != pgx.ErrNoRows {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	if err == nil && (headSeq != v.Records || !bytes.Equal(headHash, prev)) {
		v.OK, v.FirstBad, v.Reason = false, v.Records+1, "the head does not match the last record (records were removed)"
		return v, nil
	}
	if v.Records > 0 {
		v.HeadHash = hex.EncodeToString(prev)
	}
	return v, nil
}
