package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast"
)

// AuditGroup is the name of the audit consumer group (a durable consumer
// of the events stream) unless configured.
const AuditGroup = "audit"

// AuditService is the audit consumer group's effect, an append-only trail
// per tenant in which each record is hash-chained to the one before, and
// what reads and verifies it.
type AuditService struct {
	store *ConsumerStore
	db    *DB
	// Group is the consumer group whose applied sequences guard the effect. Default AuditGroup.
	Group string
}

var _ holdfast.AuditService = (*AuditService)(nil)

// NewAuditService returns an AuditService on db.
func NewAuditService(db *DB) *AuditService {
	return &AuditService{store: NewConsumerStore(db), db: db, Group: AuditGroup}
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
	list, err := collectRead(ctx, s.db, func(r pgx.CollectableRow) (*holdfast.AuditRecord, error) {
		var a holdfast.AuditRecord
		var ev, prev, hash []byte
		err := r.Scan(&a.Seq, &a.EventID, &a.Type, &a.OccurredAt, &a.RecordedAt, &ev, &prev, &hash)
		a.OccurredAt, a.RecordedAt = a.OccurredAt.UTC(), a.RecordedAt.UTC()
		a.Event, a.PrevHash, a.Hash = ev, hex.EncodeToString(prev), hex.EncodeToString(hash)
		return &a, err
	}, `SELECT seq, event_id, type, occurred_at, recorded_at, event, prev_hash, hash
		FROM audit_records WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, tenantID, after, page.Limit+1)
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

// VerifyAudit recomputes a page of the tenant's chain, at most req.Limit
// records (default and most holdfast.MaxAuditVerifyPage): from the latest
// checkpoint by default, from the checkpoint req.Cursor names, or from the
// first record with req.FromStart. It reports the first record that does
// not follow from the one before it (a gap, a changed event, a changed
// link), a checkpoint whose record or hash changed since it was recorded,
// or a head that does not match the last record; otherwise it records a
// checkpoint at the last record it verified. One verification of a tenant
// runs at a time: another waits up to a second, then gets ECONFLICT.
// EINVALID for a bad cursor or limit.
func (s *AuditService) VerifyAudit(ctx context.Context, tenantID string, req holdfast.AuditVerifyRequest) (*holdfast.AuditVerification, error) {
	limit := req.Limit
	if limit == 0 {
		limit = holdfast.MaxAuditVerifyPage
	}
	if limit < 1 || limit > holdfast.MaxAuditVerifyPage {
		return nil, holdfast.Errorf(holdfast.EINVALID, "limit must be between 1 and %d", holdfast.MaxAuditVerifyPage)
	}
	cursor := int64(-1)
	if req.Cursor != "" {
		if req.FromStart {
			return nil, holdfast.Errorf(holdfast.EINVALID, "give a cursor or from=start, not both")
		}
		c, err := strconv.ParseInt(req.Cursor, 10, 64)
		if err != nil || c < 0 || strconv.FormatInt(c, 10) != req.Cursor {
			return nil, holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
		cursor = c
	}
	if _, err := s.db.Pool.Exec(ctx, "INSERT INTO audit_verifications (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenantID); err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	// Read committed: after the lock, each statement sees what the
	// verification before this one recorded. The head is read before the
	// records: a record and its head move together, so every record up to
	// the head read is there.
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM audit_verifications WHERE tenant_id = $1 FOR UPDATE", tenantID); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
			return nil, holdfast.Errorf(holdfast.ECONFLICT, "another verification of this tenant's audit trail is running; retry once it has finished")
		}
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	v, err := verifyPage(ctx, tx, tenantID, cursor, req.FromStart, limit, s.db.now())
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("verify audit: %w", contextError(ctx, err))
	}
	return v, nil
}

// verifyPage verifies up to limit records after the start: the checkpoint
// at cursor (when not negative), the trail's first record (fromStart), or
// the latest checkpoint. It records a checkpoint where it ends, unless it
// found a break.
func verifyPage(ctx context.Context, tx pgx.Tx, tenantID string, cursor int64, fromStart bool, limit int, now time.Time) (*holdfast.AuditVerification, error) {
	v, from, prev, err := verifyStart(ctx, tx, tenantID, cursor, fromStart)
	if err != nil {
		return nil, err
	}
	var headHash []byte
	err = tx.QueryRow(ctx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", tenantID).Scan(&v.HeadSeq, &headHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	v.VerifiedThrough = from
	if from > v.HeadSeq {
		v.fail(v.HeadSeq+1, fmt.Sprintf("the trail ends at record %d, before the checkpoint at %d (records were removed)", v.HeadSeq, from))
		return v.AuditVerification, nil
	}
	to := min(from+int64(limit), v.HeadSeq)
	checkpoints, err := recordedCheckpoints(ctx, tx, tenantID, from, to)
	if err != nil {
		return nil, err
	}
	sawFrom, prev, err := v.walk(ctx, tx, tenantID, from, to, prev, checkpoints)
	if err != nil {
		return nil, err
	}
	switch {
	case !v.OK:
		return v.AuditVerification, nil
	case !sawFrom:
		v.fail(from, "the record at the checkpoint is missing")
		return v.AuditVerification, nil
	case v.VerifiedThrough < to:
		// Every record up to the head read is there (a record and its head
		// move together), unless it was removed.
		v.fail(v.VerifiedThrough+1, fmt.Sprintf("record %d is missing", v.VerifiedThrough+1))
		return v.AuditVerification, nil
	}
	if to == v.HeadSeq {
		if v.HeadSeq > 0 && !bytes.Equal(headHash, prev) {
			v.fail(v.HeadSeq+1, "the head does not match the last record (records were removed)")
			return v.AuditVerification, nil
		}
		if v.HeadSeq > 0 {
			v.HeadHash = hex.EncodeToString(prev)
		}
	} else {
		v.More, v.NextCursor = true, strconv.FormatInt(to, 10)
	}
	if to > from {
		if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (tenant_id, seq, hash, verified_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, seq) DO NOTHING`, tenantID, to, prev, now); err != nil {
			return nil, err
		}
	}
	return v.AuditVerification, nil
}

// verification is a verification in progress.
type verification struct{ *holdfast.AuditVerification }

// fail records the first break: the record at seq.
func (v verification) fail(seq int64, reason string) {
	v.OK, v.FirstBad, v.Reason, v.VerifiedThrough = false, seq, reason, seq-1
}

// verifyStart returns where a verification starts: the checkpoint at cursor
// (when positive), the latest checkpoint (cursor negative, not fromStart),
// or the trail's start; and the hash the chain continues from.
func verifyStart(ctx context.Context, tx pgx.Tx, tenantID string, cursor int64, fromStart bool) (verification, int64, []byte, error) {
	v := verification{&holdfast.AuditVerification{OK: true, Start: "start"}}
	if cursor <= 0 && (fromStart || cursor >= 0) {
		return v, 0, genesis, nil
	}
	var cp holdfast.AuditCheckpoint
	var hash []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash, verified_at FROM audit_checkpoints WHERE tenant_id = $1 AND ($2 < 0 OR seq = $2)
		ORDER BY seq DESC LIMIT 1`, tenantID, cursor).Scan(&cp.Seq, &hash, &cp.VerifiedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows) && cursor > 0:
		return v, 0, nil, holdfast.Errorf(holdfast.EINVALID, "cursor names no checkpoint of this trail")
	case errors.Is(err, pgx.ErrNoRows):
		return v, 0, genesis, nil // no checkpoint yet: from the start
	case err != nil:
		return v, 0, nil, err
	}
	cp.Hash, cp.VerifiedAt = hex.EncodeToString(hash), cp.VerifiedAt.UTC()
	v.Start, v.Checkpoint = "checkpoint", &cp
	return v, cp.Seq, hash, nil
}

// recordedCheckpoints returns the checkpoints recorded before in (from, to]:
// the hashes recomputed there must be theirs, or the trail changed after
// they were verified.
func recordedCheckpoints(ctx context.Context, tx pgx.Tx, tenantID string, from, to int64) (map[int64][]byte, error) {
	checkpoints := map[int64][]byte{}
	rows, _ := tx.Query(ctx, "SELECT seq, hash FROM audit_checkpoints WHERE tenant_id = $1 AND seq > $2 AND seq <= $3", tenantID, from, to)
	var seq int64
	var hash []byte
	_, err := pgx.ForEachRow(rows, []any{&seq, &hash}, func() error {
		checkpoints[seq] = bytes.Clone(hash)
		return nil
	})
	return checkpoints, err
}

// walk recomputes the chain over the records (from, to], and reads the
// checkpoint's own record at from, whose hash must still be the one
// recorded. It returns whether that record was there and the chain's last
// hash.
func (v verification) walk(ctx context.Context, tx pgx.Tx, tenantID string, from, to int64, prev []byte, checkpoints map[int64][]byte) (bool, []byte, error) {
	rows, _ := tx.Query(ctx, `SELECT seq, event, prev_hash, hash FROM audit_records WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3
		ORDER BY seq`, tenantID, max(from, 1), to)
	expect, sawFrom := from+1, from == 0
	var seq int64
	var event, prevHash, hash []byte
	_, err := pgx.ForEachRow(rows, []any{&seq, &event, &prevHash, &hash}, func() error {
		switch {
		case !v.OK:
		case seq == from:
			sawFrom = true
			if !bytes.Equal(hash, prev) {
				v.fail(from, "the record at the checkpoint no longer has the checkpoint's hash")
			}
		case !sawFrom:
			v.fail(from, "the record at the checkpoint is missing")
		case seq != expect:
			v.fail(expect, fmt.Sprintf("record %d is missing", expect))
		case !bytes.Equal(prevHash, prev):
			v.fail(seq, "its prev_hash is not the hash of the record before it")
		case !bytes.Equal(hash, chain(prev, event)):
			v.fail(seq, "its hash does not match its event")
		case checkpoints[seq] != nil && !bytes.Equal(hash, checkpoints[seq]):
			v.fail(seq, "its hash is not the one a verification recorded for it: the trail was changed after it was verified")
		default:
			if v.FromSeq == 0 {
				v.FromSeq = seq
			}
			v.ToSeq, v.Records, v.VerifiedThrough = seq, v.Records+1, seq
			prev = bytes.Clone(hash)
			expect++
		}
		return nil
	})
	return sawFrom, prev, err
}
