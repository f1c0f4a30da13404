package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// rowCounter counts the rows statements reading audit_records returned:
// the verifier's work, counted rather than timed.
type rowCounter struct{ rows atomic.Int64 }

type sqlKey struct{}

func (c *rowCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, d.SQL)
}

func (c *rowCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if sql, _ := ctx.Value(sqlKey{}).(string); strings.Contains(sql, "FROM audit_records") && d.CommandTag.Select() {
		c.rows.Add(d.CommandTag.RowsAffected())
	}
}

// take returns the rows counted since the last take.
func (c *rowCounter) take() int64 { return c.rows.Swap(0) }

// auditEnv is a tenant's trail and a verifier whose reads are counted.
type auditEnv struct {
	db     *postgres.DB
	tenant string
	audit  *postgres.AuditService // appends
	verify *postgres.AuditService // verifies, on the counting pool
	rows   *rowCounter
	n      int // records appended
}

func setupAudit(t *testing.T) *auditEnv {
	t.Helper()
	db := MustOpenDB(t)
	if _, err := postgres.NewConsumerStore(db).EnsureGroup(t.Context(), postgres.AuditGroup, "audit_test", ""); err != nil {
		t.Fatal(err)
	}
	cfg := db.Pool.Config()
	c := &rowCounter{}
	cfg.ConnConfig.Tracer = c
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &auditEnv{db: db, tenant: MustTenant(t, db), audit: postgres.NewAuditService(db),
		verify: postgres.NewAuditService(&postgres.DB{Pool: pool, Now: time.Now}), rows: c}
}

// append appends n records to the trail, as the audit group would.
func (e *auditEnv) append(t *testing.T, n int) {
	t.Helper()
	batch := make([]holdfast.EventDelivery, n)
	for i := range batch {
		e.n++
		ev := holdfast.Event{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", e.n), Type: "x.y", TenantID: e.tenant, OccurredAt: time.Now()}
		batch[i] = holdfast.EventDelivery{Seq: uint64(e.n), Event: ev, Raw: fmt.Appendf(nil, `{"n":%d}`, e.n)}
	}
	if err := e.audit.ApplyEvents(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
}

func (e *auditEnv) mustVerify(t *testing.T, req holdfast.AuditVerifyRequest) *holdfast.AuditVerification {
	t.Helper()
	v, err := e.verify.VerifyAudit(t.Context(), e.tenant, req)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tamper runs sql on audit_records with the append-only trigger off.
func (e *auditEnv) tamper(t *testing.T, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(t.Context(), e.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "ALTER TABLE audit_records DISABLE TRIGGER audit_append_only"); err != nil {
			return err
		}
		if _, err := tx.Exec(t.Context(), sql, args...); err != nil {
			return err
		}
		_, err := tx.Exec(t.Context(), "ALTER TABLE audit_records ENABLE TRIGGER audit_append_only")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A trail longer than a page verifies across calls, each from the
// checkpoint the one before recorded, each reading a page and the
// checkpoint's record; records appended later are verified from the last
// checkpoint on, not from the start.
func TestAuditVerify_PagesFromCheckpointsWithBoundedWork(t *testing.T) {
	t.Parallel()
	e := setupAudit(t)
	e.append(t, 25)
	type page struct {
		from, to, through int64
		more              bool
	}
	for i, want := range []page{{1, 10, 10, true}, {11, 20, 20, true}, {21, 25, 25, false}} {
		v := e.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10})
		got := page{v.FromSeq, v.ToSeq, v.VerifiedThrough, v.More}
		if !v.OK || got != want || v.HeadSeq != 25 {
			t.Fatalf("call %d = %+v, want %+v", i, v, want)
		}
		if (i == 0) != (v.Start == "start") || i > 0 && v.Checkpoint.Seq != want.from-1 {
			t.Fatalf("call %d started at %s %+v", i, v.Start, v.Checkpoint)
		}
		if n := e.rows.take(); n > 11 {
			t.Fatalf("call %d read %d records, want at most a page of 10 and the checkpoint's", i, n)
		}
		if want.more != (v.NextCursor != "") || !want.more && v.HeadHash == "" {
			t.Fatalf("call %d: cursor %q, head hash %q", i, v.NextCursor, v.HeadHash)
		}
	}
	e.append(t, 5)
	v := e.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10})
	if !v.OK || v.FromSeq != 26 || v.ToSeq != 30 || v.Records != 5 || v.More {
		t.Fatalf("after 5 more = %+v, want 26..30 verified", v)
	}
	if n := e.rows.take(); n != 6 {
		t.Fatalf("read %d records, want the 5 new ones and the checkpoint's", n)
	}
	// Nothing new: the checkpoint's record and the head.
	if v := e.mustVerify(t, holdfast.AuditVerifyRequest{}); !v.OK || v.Records != 0 || v.VerifiedThrough != 30 || v.More {
		t.Fatalf("nothing new = %+v", v)
	}
	if n := e.rows.take(); n != 1 {
		t.Fatalf("read %d records with nothing new, want the checkpoint's", n)
	}
	// A full re-verification is paged the same way.
	var calls int
	for req := (holdfast.AuditVerifyRequest{FromStart: true, Limit: 10}); ; calls++ {
		v := e.mustVerify(t, req)
		if !v.OK {
			t.Fatalf("re-verification = %+v", v)
		}
		if n := e.rows.take(); n > 11 {
			t.Fatalf("re-verification read %d records in a call", n)
		}
		if !v.More {
			break
		}
		req = holdfast.AuditVerifyRequest{Cursor: v.NextCursor, Limit: 10}
	}
	if calls != 2 {
		t.Fatalf("re-verifying 30 records took %d calls after the first, want 2", calls)
	}
}

// Tampering after the latest checkpoint is found by the next call; before
// it, by a verification from the start; a trail rewritten consistently
// from a record on (hashes and head recomputed) by the checkpoints it
// passes. The verdict says what was verified.
func TestAuditVerify_FindsTampering(t *testing.T) {
	t.Parallel()
	e := setupAudit(t)
	e.append(t, 20)
	e.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10}) // checkpoint at 10
	e.tamper(t, `UPDATE audit_records SET event = '{"n":99}' WHERE tenant_id = $1 AND seq IN (4, 13)`, e.tenant)

	v := e.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10})
	if v.OK || v.FirstBad != 13 || v.VerifiedThrough != 12 || v.Start != "checkpoint" || v.Checkpoint.Seq != 10 || v.NextCursor != "" {
		t.Fatalf("after tampering with 13 = %+v, want the break at 13 found from the checkpoint at 10", v)
	}
	v = e.mustVerify(t, holdfast.AuditVerifyRequest{FromStart: true, Limit: 10})
	if v.OK || v.FirstBad != 4 || v.VerifiedThrough != 3 || v.Start != "start" {
		t.Fatalf("from the start = %+v, want the break at 4", v)
	}

	// Rewritten from record 7 on, consistently: each hash recomputed from
	// the changed event, and the head moved along.
	f := setupAudit(t)
	f.append(t, 20)
	f.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10})
	f.tamper(t, `WITH RECURSIVE r AS (
			SELECT seq, prev_hash, sha256(prev_hash || '{"n":77}'::bytea) AS hash, '{"n":77}'::bytea AS event FROM audit_records WHERE tenant_id = $1 AND seq = 7
			UNION ALL
			SELECT a.seq, r.hash, sha256(r.hash || a.event), a.event FROM audit_records a JOIN r ON a.seq = r.seq + 1 WHERE a.tenant_id = $1)
		UPDATE audit_records a SET event = r.event, prev_hash = r.prev_hash, hash = r.hash FROM r WHERE a.tenant_id = $1 AND a.seq = r.seq`, f.tenant)
	if _, err := f.db.Pool.Exec(t.Context(), `UPDATE audit_heads h SET hash = a.hash FROM audit_records a
		WHERE h.tenant_id = $1 AND a.tenant_id = $1 AND a.seq = h.seq`, f.tenant); err != nil {
		t.Fatal(err)
	}
	v = f.mustVerify(t, holdfast.AuditVerifyRequest{Limit: 10})
	if v.OK || v.FirstBad != 10 {
		t.Fatalf("after rewriting from 7, from the checkpoint = %+v, want its record found changed", v)
	}
	v = f.mustVerify(t, holdfast.AuditVerifyRequest{FromStart: true, Limit: 10})
	if v.OK || v.FirstBad != 10 || !strings.Contains(v.Reason, "changed after it was verified") {
		t.Fatalf("after rewriting from 7, from the start = %+v, want the checkpoint at 10 to disagree", v)
	}
}

// One verification of a tenant runs at a time; another tenant's is not held up.
func TestAuditVerify_OneAtATimePerTenant(t *testing.T) {
	t.Parallel()
	e := setupAudit(t)
	e.append(t, 3)
	e.mustVerify(t, holdfast.AuditVerifyRequest{})
	tx, err := e.db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), "SELECT 1 FROM audit_verifications WHERE tenant_id = $1 FOR UPDATE", e.tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := e.verify.VerifyAudit(t.Context(), e.tenant, holdfast.AuditVerifyRequest{}); !holdfast.IsCode(err, holdfast.ECONFLICT) {
		t.Fatalf("a second verification of the tenant: %v, want ECONFLICT", err)
	}
	other := MustTenant(t, e.db)
	if v, err := e.verify.VerifyAudit(t.Context(), other, holdfast.AuditVerifyRequest{}); err != nil || !v.OK {
		t.Fatalf("another tenant's verification = %+v, %v", v, err)
	}
	for _, req := range []holdfast.AuditVerifyRequest{{Cursor: "x"}, {Cursor: "5"}, {Cursor: "3", FromStart: true}, {Limit: holdfast.MaxAuditVerifyPage + 1}} {
		if _, err := e.verify.VerifyAudit(t.Context(), other, req); !holdfast.IsCode(err, holdfast.EINVALID) {
			t.Errorf("%+v: %v, want EINVALID", req, err)
		}
	}
}
