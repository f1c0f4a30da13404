package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The array parameters of the ledger's bulk statements (unnest($1::uuid[],
// …)) are the types below: each writes itself in PostgreSQL's binary array
// format, in one pass, into a buffer grown once to its exact size.
//
// pgx's generic array codec boxes every element into an interface, finds
// its encode plan, and appends to a parameter buffer that pgx shrinks back
// to 256 bytes after each statement, so a batch's large arrays regrow it by
// doubling every time. In `holdfast-lab bench transfers` that, with the send
// buffer presizeSend grows, was the largest allocator of the process: the
// committers allocated ~10 KB a transfer, ~5 KB with these.
//
// RegisterArrays installs them on a connection; Open's pools do it on
// every connection (AfterConnect). On a connection without them pgx
// encodes the same values through their underlying slice types: the same
// arrays, slower, except that a UUIDArray element that is not a UUID is an
// error there instead of the nil UUID.

// binaryArray is a slice that encodes itself as a one-dimensional binary
// PostgreSQL array of elements of type elemOID.
type binaryArray interface {
	elemOID() uint32
	len() int
	// size is the encoded size of the elements, including their lengths.
	size() int
	appendElems(buf []byte) []byte
}

// Array parameters, for bulk statements in this package and outside it
// (benchmarks, seeding), on connections with RegisterArrays.
type (
	// UUIDArray is a uuid[] of UUIDs in text form, validated before: one
	// that is not a UUID becomes the nil UUID, which matches nothing.
	UUIDArray []string
	// Int8Array is a bigint[].
	Int8Array []int64
	// Int4Array is an int[].
	Int4Array []int32
	// BoolArray is a boolean[].
	BoolArray []bool
	// TextArray is a text[].
	TextArray []string
	// ByteaArray is a bytea[]; a nil element is NULL.
	ByteaArray [][]byte
	// TimestamptzArray is a timestamptz[] (to the microsecond, as
	// PostgreSQL stores it).
	TimestamptzArray []time.Time
)

func (a UUIDArray) elemOID() uint32 { return pgtype.UUIDOID }
func (a UUIDArray) len() int        { return len(a) }
func (a UUIDArray) size() int       { return len(a) * (4 + 16) }
func (a UUIDArray) appendElems(buf []byte) []byte {
	for _, s := range a {
		buf = binary.BigEndian.AppendUint32(buf, 16)
		u := parseUUID(s)
		buf = append(buf, u[:]...)
	}
	return buf
}

// parseUUID is uuid.Parse, but the nil UUID for a malformed s: uuid.Parse
// returns what it decoded before the error.
func parseUUID(s string) [16]byte {
	u, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}
	}
	return u
}

func (a Int8Array) elemOID() uint32 { return pgtype.Int8OID }
func (a Int8Array) len() int        { return len(a) }
func (a Int8Array) size() int       { return len(a) * (4 + 8) }
func (a Int8Array) appendElems(buf []byte) []byte {
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(v))
	}
	return buf
}

func (a Int4Array) elemOID() uint32 { return pgtype.Int4OID }
func (a Int4Array) len() int        { return len(a) }
func (a Int4Array) size() int       { return len(a) * (4 + 4) }
func (a Int4Array) appendElems(buf []byte) []byte {
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(v))
	}
	return buf
}

func (a BoolArray) elemOID() uint32 { return pgtype.BoolOID }
func (a BoolArray) len() int        { return len(a) }
func (a BoolArray) size() int       { return len(a) * (4 + 1) }
func (a BoolArray) appendElems(buf []byte) []byte {
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 1)
		if v {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
	}
	return buf
}

func (a TextArray) elemOID() uint32 { return pgtype.TextOID }
func (a TextArray) len() int        { return len(a) }
func (a TextArray) size() int {
	n := 4 * len(a)
	for _, s := range a {
		n += len(s)
	}
	return n
}
func (a TextArray) appendElems(buf []byte) []byte {
	for _, s := range a {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		buf = append(buf, s...)
	}
	return buf
}

func (a ByteaArray) elemOID() uint32 { return pgtype.ByteaOID }
func (a ByteaArray) len() int        { return len(a) }
func (a ByteaArray) size() int {
	n := 4 * len(a)
	for _, b := range a {
		n += len(b)
	}
	return n
}
func (a ByteaArray) appendElems(buf []byte) []byte {
	for _, b := range a {
		if b == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF) // -1: NULL
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	return buf
}

// microsecFromUnixEpochToY2K is PostgreSQL's epoch (2000-01-01 UTC) in
// microseconds since the Unix epoch.
const microsecFromUnixEpochToY2K = 946684800 * 1000000

func (a TimestamptzArray) elemOID() uint32 { return pgtype.TimestamptzOID }
func (a TimestamptzArray) len() int        { return len(a) }
func (a TimestamptzArray) size() int       { return len(a) * (4 + 8) }
func (a TimestamptzArray) appendElems(buf []byte) []byte {
	for _, t := range a {
		us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - microsecFromUnixEpochToY2K
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(us))
	}
	return buf
}

func hasNull(a binaryArray) bool {
	if b, ok := a.(ByteaArray); ok {
		return slices.ContainsFunc(b, func(e []byte) bool { return e == nil })
	}
	return false
}

// appendBinaryArray appends a in PostgreSQL's binary array format (see
// array_recv): dimensions, a has-null flag, the element type, each
// dimension's length and lower bound, then each element as its length
// (-1: NULL) and its bytes.
func appendBinaryArray(buf []byte, a binaryArray) []byte {
	n := a.len()
	buf = slices.Grow(buf, 20+a.size())
	if n == 0 {
		buf = binary.BigEndian.AppendUint32(buf, 0) // no dimensions: '{}'
		buf = binary.BigEndian.AppendUint32(buf, 0)
		return binary.BigEndian.AppendUint32(buf, a.elemOID())
	}
	var flags uint32
	if hasNull(a) {
		flags = 1
	}
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, flags)
	buf = binary.BigEndian.AppendUint32(buf, a.elemOID())
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = binary.BigEndian.AppendUint32(buf, 1)
	return a.appendElems(buf)
}

// arrayCodec is pgx's codec for an array type, taking over the binary
// encoding of the binaryArray of its element type.
type arrayCodec struct {
	pgtype.Codec
	elem uint32
	bufs *connBuffers // the connection's
}

func (c arrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if a, ok := value.(binaryArray); ok && format == pgtype.BinaryFormatCode && a.elemOID() == c.elem {
		return encodeBinaryArray{&c.bufs.params}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type encodeBinaryArray struct{ params *keptBuffer }

func (e encodeBinaryArray) Encode(value any, buf []byte) ([]byte, error) {
	a := value.(binaryArray)
	return appendBinaryArray(e.params.room(buf, 20+a.size()), a), nil
}

// connBuffers are the buffers a connection keeps for pgx from one use to
// the next, where pgx itself lets them go once they are large:
//
//   - params, for a statement's parameters. pgx encodes them one after the
//     other into one buffer and drops it before the next statement if it
//     grew past 256 bytes. A batch's statements take several arrays each,
//     so every array regrew it from the size of those before: the eight
//     arrays of the transfers' insert copied the first one seven times, the
//     second six times, and so on (1 GB of the 4.8 GB a uniform benchmark
//     run allocated; docs/decisions/0008-array-parameters-encode-themselves.md). Safe to reuse because pgx copies
//     each statement's parameters into the protocol message it sends (Bind)
//     before it encodes the next statement's, in a batch or not.
//   - send, for the messages of a batch (see presizeSend). pgx drops its
//     send buffer after every write once it passed 1 KB. Safe to reuse
//     because pgx writes that buffer to the connection before it returns
//     from sending, and a batch is sent whole before the next one starts.
//
// A buffer that pgx still holds is never handed out again (room checks).
type connBuffers struct{ params, send keptBuffer }

// keptBuffer is one of a connection's kept buffers.
type keptBuffer struct{ buf []byte }

// maxKeptBuffer bounds what a connection keeps.
const maxKeptBuffer = 4 << 20

// room returns buf, or the connection's buffer holding a copy of buf, with
// room for need more bytes. Bytes already in buf stay where they were too,
// as with any growth of a buffer.
func (k *keptBuffer) room(buf []byte, need int) []byte {
	if cap(buf)-len(buf) >= need {
		return buf
	}
	if k != nil && cap(k.buf) >= len(buf)+need && !sameArray(buf, k.buf) {
		return append(k.buf[:0], buf...)
	}
	buf = slices.Grow(buf, need)
	if k != nil && cap(buf) > cap(k.buf) && cap(buf) <= maxKeptBuffer {
		k.buf = buf[:0]
	}
	return buf
}

// sameArray reports whether a and b share their backing array.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && unsafe.SliceData(a[:cap(a)]) == unsafe.SliceData(b[:cap(b)])
}

// arrayOIDs maps each array type the binaryArray types encode to its
// element type.
var arrayOIDs = map[uint32]uint32{
	pgtype.UUIDArrayOID:        pgtype.UUIDOID,
	pgtype.Int8ArrayOID:        pgtype.Int8OID,
	pgtype.Int4ArrayOID:        pgtype.Int4OID,
	pgtype.BoolArrayOID:        pgtype.BoolOID,
	pgtype.TextArrayOID:        pgtype.TextOID,
	pgtype.ByteaArrayOID:       pgtype.ByteaOID,
	pgtype.TimestamptzArrayOID: pgtype.TimestamptzOID,
}

// RegisterArrays installs the array parameters' encoders on conn: an
// AfterConnect hook for a pool (pgxpool.Config).
func RegisterArrays(_ context.Context, conn *pgx.Conn) error {
	m := conn.TypeMap()
	bufs := &connBuffers{}
	for oid, elem := range arrayOIDs {
		t, ok := m.TypeForOID(oid)
		if !ok {
			continue
		}
		m.RegisterType(&pgtype.Type{Name: t.Name, OID: oid, Codec: arrayCodec{Codec: t.Codec, elem: elem, bufs: bufs}})
	}
	return nil
}

// presizeSend grows conn's send buffer to about the size of b's messages
// before pgx encodes them, taking the connection's kept send buffer (see
// connBuffers) when it has one. pgx drops that buffer after every write
// once it passed 1 KB, so a batch's tens or hundreds of kilobytes of
// parameters otherwise regrow it by doubling, every round trip. This relies
// on pgx keeping the buffer between this call and the batch's encoding, as
// it does when b's statements are already prepared (the steady state); when
// it does not, the only loss is this allocation.
func presizeSend(conn *pgx.Conn, b *pgx.Batch) {
	n := 64
	for _, q := range b.QueuedQueries {
		n += 128 + 8*len(q.Arguments) // Bind (statement name, formats, lengths) and Execute
		for _, a := range q.Arguments {
			switch v := a.(type) {
			case binaryArray:
				n += 20 + v.size()
			case []byte:
				n += len(v)
			case string:
				n += len(v)
			default:
				n += 16
			}
		}
	}
	var kept *keptBuffer
	if bufs := connBuffersOf(conn); bufs != nil {
		kept = &bufs.send
	}
	conn.PgConn().Frontend().Send(growBuffer{n, kept})
}

// connBuffersOf returns the buffers RegisterArrays gave conn, nil if it was
// not called on conn. They hang off the array codecs it registered, which
// are the connection's own.
func connBuffersOf(conn *pgx.Conn) *connBuffers {
	if t, ok := conn.TypeMap().TypeForOID(pgtype.Int8ArrayOID); ok {
		if c, ok := t.Codec.(arrayCodec); ok {
			return c.bufs
		}
	}
	return nil
}

// growBuffer is a message that writes nothing: "encoding" it gives the
// frontend's send buffer room for n more bytes.
type growBuffer struct {
	n    int
	kept *keptBuffer // nil: grow pgx's own
}

func (growBuffer) Frontend() {}

func (growBuffer) Decode([]byte) error { return errors.New("growBuffer is not a protocol message") }

func (g growBuffer) Encode(dst []byte) ([]byte, error) { return g.kept.room(dst, g.n), nil }
