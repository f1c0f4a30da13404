package postgres

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Each binaryArray type gives PostgreSQL the same array as pgx's generic
// encoding of the same values (the oracle), on a connection of the pools
// Open makes (where they encode themselves) and on a plain connection
// (where pgx falls back to their underlying slice types).
func TestBinaryArrays_MatchPgxEncoding(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	plain, err := pgx.Connect(ctx, db.Pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)

	est := time.FixedZone("EST", -5*3600)
	cases := []struct {
		typ      string
		fast     binaryArray
		generic  any
		poolOnly bool // pgx's fallback sends the text, which the server refuses
	}{
		{"uuid[]", UUIDArray{"0191a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "0191A3C4-5E6F-7A8B-9C0D-1E2F3A4B5C6E", "{0191a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6f}"},
			[][16]byte{
				{0x01, 0x91, 0xa3, 0xc4, 0x5e, 0x6f, 0x7a, 0x8b, 0x9c, 0x0d, 0x1e, 0x2f, 0x3a, 0x4b, 0x5c, 0x6d},
				{0x01, 0x91, 0xa3, 0xc4, 0x5e, 0x6f, 0x7a, 0x8b, 0x9c, 0x0d, 0x1e, 0x2f, 0x3a, 0x4b, 0x5c, 0x6e},
				{0x01, 0x91, 0xa3, 0xc4, 0x5e, 0x6f, 0x7a, 0x8b, 0x9c, 0x0d, 0x1e, 0x2f, 0x3a, 0x4b, 0x5c, 0x6f},
			}, false},
		{"uuid[]", UUIDArray{"not-a-uuid", "0191a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6x"}, [][16]byte{{}, {}}, true},
		{"uuid[]", UUIDArray{}, [][16]byte{}, false},
		{"bigint[]", Int8Array{0, -1, 1, math.MaxInt64, math.MinInt64}, []int64{0, -1, 1, math.MaxInt64, math.MinInt64}, false},
		{"int[]", Int4Array{0, -5, math.MaxInt32, math.MinInt32}, []int32{0, -5, math.MaxInt32, math.MinInt32}, false},
		{"boolean[]", BoolArray{true, false}, []bool{true, false}, false},
		{"text[]", TextArray{"", "héllo", `a,b{}"\ NULL`}, []string{"", "héllo", `a,b{}"\ NULL`}, false},
		{"text[]", TextArray{}, []string{}, false},
		{"bytea[]", ByteaArray{nil, {}, {0, 1, 255}, []byte(`{"a":1}`)}, [][]byte{nil, {}, {0, 1, 255}, []byte(`{"a":1}`)}, false},
		{"timestamptz[]", TimestamptzArray{
			time.Date(2026, 11, 29, 4, 5, 6, 123456789, time.UTC),
			time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
			time.Date(1999, 12, 31, 23, 0, 0, 1000, est),
			time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		}, []time.Time{
			time.Date(2026, 11, 29, 4, 5, 6, 123456789, time.UTC),
			time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
			time.Date(1999, 12, 31, 23, 0, 0, 1000, est),
			time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		}, false},
	}
	conns := []struct {
		name string
		q    func(ctx context.Context, sql string, args ...any) pgx.Row
	}{{"pool", db.Pool.QueryRow}, {"plain connection", plain.QueryRow}}
	for _, c := range cases {
		for _, conn := range conns {
			if c.poolOnly && conn.name != "pool" {
				continue
			}
			var got, want string
			var equal bool
			err := conn.q(ctx, `SELECT $1::`+c.typ+`::text, $2::`+c.typ+`::text, $1::`+c.typ+` IS NOT DISTINCT FROM $2::`+c.typ, c.fast, c.generic).Scan(&got, &want, &equal)
			if err != nil {
				t.Errorf("%s on a %s: %v", c.typ, conn.name, err)
				continue
			}
			if got != want || !equal {
				t.Errorf("%s on a %s: got %s, want %s (equal %v)", c.typ, conn.name, got, want, equal)
			}
		}
	}

	// On the pool's connections the types encode themselves.
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, c := range cases {
		var oid uint32
		for a, e := range arrayOIDs {
			if e == c.fast.elemOID() {
				oid = a
			}
		}
		if _, ok := conn.Conn().TypeMap().PlanEncode(oid, pgtype.BinaryFormatCode, c.fast).(encodeBinaryArray); !ok {
			t.Errorf("%s: pgx does not use the binaryArray encoder on the pool's connections", c.typ)
		}
	}
}

// presizeSend grows pgx's send buffer once, where pgx would regrow it by
// doubling from 1 KB while encoding a large batch. It relies on pgx keeping
// that buffer until the batch is encoded; this fails if a pgx version stops.
func TestPresizeSend_GrowsTheBufferOnce(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	param := make([]byte, 32<<10)
	send := func(presize bool) uint64 {
		var b pgx.Batch
		for range 8 { // 256 KB in all, as a batch's statements send
			b.Queue("SELECT length($1::bytea)", param)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if presize {
			presizeSend(conn.Conn(), &b)
		}
		err := conn.SendBatch(ctx, &b).Close()
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	send(false) // prepares the statement
	const runs = 10
	var plain, presized uint64
	for range runs {
		plain += send(false)
		presized += send(true)
	}
	// Regrowing from 1 KB to hold 256 KB allocates about 256 KB more than
	// one allocation of the right size; the parameter buffers are the same.
	t.Logf("a batch of 256 KB allocated %d bytes without presizeSend, %d with", plain/runs, presized/runs)
	if saved := (int64(plain) - int64(presized)) / runs; saved < 128<<10 {
		t.Errorf("presizeSend saved %d bytes a batch, want at least 128 KB", saved)
	}
}
