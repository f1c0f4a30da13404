package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A packed outbox row is compressed with lz4 where the server has it
// (migration 0008): pglz, the default, cost 2% of the machine's CPU under
// load for rows that live a few milliseconds.
func TestOutbox_PackedRowsCompressWithLZ4(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	var lz4 bool
	if err := db.Pool.QueryRow(ctx, `SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	if !lz4 {
		t.Skip("this PostgreSQL server was built without lz4; the migration keeps pglz")
	}

	p := newPacker(time.Now())
	for i := range 500 {
		if err := p.add("00000000-0000-0000-0000-000000000001", "transfer.posted", map[string]any{"seq": i, "note": "an event like a transfer's, with a repeated description"}); err != nil {
			t.Fatal(err)
		}
	}
	rows := p.done()
	if len(rows) != 1 || len(rows[0].packed) != 500 {
		t.Fatalf("packed %d rows, want 1 of 500 events", len(rows))
	}
	var b pgx.Batch
	queueOutbox(&b, rows)
	if err := db.Pool.SendBatch(ctx, &b).Close(); err != nil {
		t.Fatal(err)
	}
	var method string
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(pg_column_compression(event_data), 'none') FROM outbox WHERE id = $1", rows[0].id).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method != "lz4" {
		t.Fatalf("packed events compressed with %q, want lz4", method)
	}
}
