package postgres

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
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

// A connection's statements share its parameter buffer (connBuffers): each
// statement of a batch, pipelined or not, and statements run one by one,
// still reach the server with their own arrays, which they would not if the
// buffer were reused before pgx had sent them.
func TestParamBuffer_StatementsKeepTheirArrays(t *testing.T) {
	ctx := context.Background()
	db, conn := acquireFresh(t)
	const sql = `SELECT $1::bigint[] = $2::bigint[] AND $3::text[] = $4::text[] AND $5::uuid[]::text = $6`
	args := func(i int) []any {
		n := 40 * (i + 1) // each larger than the last: the buffer grows, then is reused
		ints, texts, ids := make([]int64, n), make([]string, n), make([]string, n)
		for j := range n {
			ints[j], texts[j] = int64(i*1000+j), fmt.Sprintf("s%d-%d", i, j)
			ids[j] = fmt.Sprintf("%08x-0000-7000-8000-%012x", i, j)
		}
		return []any{Int8Array(ints), ints, TextArray(texts), texts, UUIDArray(ids), "{" + strings.Join(ids, ",") + "}"}
	}
	check := func(how string, i int, ok bool, err error) {
		t.Helper()
		if err != nil || !ok {
			t.Errorf("%s, statement %d: its arrays reached the server as others (%v)", how, i, err)
		}
	}
	// pgx pipelines a batch of prepared statements (the pool's mode) and one
	// of statements it only describes (QueryExecModeDescribeExec). (Its
	// QueryExecModeExec sends parameters as text, which binaryArray leaves
	// to pgx's own encoders.)
	cfg := db.Pool.Config().ConnConfig.Copy()
	cfg.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	unprepared, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer unprepared.Close(ctx)
	if err := RegisterArrays(ctx, unprepared); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		how  string
		conn *pgx.Conn
	}{{"a pipelined batch", conn.Conn()}, {"a batch of described statements", unprepared}} {
		var b pgx.Batch
		results := make([]bool, 6)
		for i := range results {
			b.Queue(sql, args(i)...).QueryRow(func(r pgx.Row) error { return r.Scan(&results[i]) })
		}
		err := c.conn.SendBatch(ctx, &b).Close()
		for i, ok := range results {
			check(c.how, i, ok, err)
		}
		for i := range 6 {
			var ok bool
			err := c.conn.QueryRow(ctx, sql, args(5-i)...).Scan(&ok)
			check(c.how+", then one by one", 5-i, ok, err)
		}
		if bufs := connBuffersOf(c.conn); bufs == nil || cap(bufs.params.buf) < 40*6*12 {
			t.Fatalf("%s: the connection kept no parameter buffer; this test did not exercise it", c.how)
		}
	}
}

// presizeSend grows pgx's send buffer once, where pgx would regrow it by
// doubling from 1 KB while encoding a large batch, and from the second batch
// on hands pgx the buffer the connection kept. It relies on pgx keeping that
// buffer until the batch is encoded; this fails if a pgx version stops.
func TestPresizeSend_GrowsTheBufferOnce(t *testing.T) {
	ctx := context.Background()
	_, conn := acquireFresh(t)
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
	// The parameters (8 × 32 KB, through pgx's own bytea encoder) are
	// allocated again for every batch; the send buffer, which the connection
	// keeps (connBuffers), is not.
	if per := presized / runs; per > 256<<10+96<<10 {
		t.Errorf("a presized batch of 256 KB allocated %d bytes: the connection does not keep its send buffer", per)
	}
}

// acquireFresh returns a fresh database and one of its pool's connections,
// released at the test's end.
func acquireFresh(t *testing.T) (*DB, *pgxpool.Conn) {
	t.Helper()
	db := openMigrated(t)
	conn, err := db.Pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Release)
	return db, conn
}
