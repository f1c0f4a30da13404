package postgres

import (
	"context"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// An export holds its connection for its whole run, so what a connection of
// the export pool keeps is memory each concurrent export costs (and at
// GOGC 400, up to five times that in heap). It runs two statements: a
// statement cache of pgx's default 512 entries per connection, preallocated,
// would be most of it.
func TestExportService_ConnectionsHoldLittle(t *testing.T) {
	const conns = 16
	db := openMigrated(t)
	s, err := NewExportService(db, ExportConfig{MaxConns: conns})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := live()
	held := make([]*pgxpool.Conn, conns)
	for i := range held {
		if held[i], err = s.pool.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	per := (int64(live()) - int64(before)) / conns
	for _, c := range held {
		c.Release()
	}
	if per > 48<<10 {
		t.Fatalf("each export connection holds %d KiB of heap, want at most 48 KiB", per>>10)
	}
	t.Logf("each export connection holds %d KiB of heap", per>>10)
}
