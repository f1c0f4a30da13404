package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/blob/s3"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/internal/testkit/s3test"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// setup starts a server and a database and returns a store on them.
func setup(t *testing.T) (*s3.Store, *s3test.Server, *postgres.DB) {
	t.Helper()
	srv := s3test.MustStart(t)
	db := dbtest.MustOpenDB(t)
	return mustStore(t, srv, db), srv, db
}

func mustStore(t *testing.T, srv *s3test.Server, db *postgres.DB) *s3.Store {
	t.Helper()
	cfg, err := s3.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey, cfg.Ledger = srv.AccessKey, srv.SecretKey, postgres.NewBlobLedger(db)
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustRead(t *testing.T, st *s3.Store, key string) []byte {
	t.Helper()
	f, size, err := st.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("read %d bytes, Open said %d", len(b), size)
	}
	return b
}

func TestStore_PutOpenExistsRoundTrip(t *testing.T) {
	st, _, _ := setup(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("receipt "), 10_000)
	key, err := st.PutBytes(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if key != blob.Key(data) {
		t.Fatalf("key %s, want %s", key, blob.Key(data))
	}
	if ok, err := st.Exists(ctx, key); err != nil || !ok {
		t.Fatalf("Exists = %v, %v; want true", ok, err)
	}
	if got := mustRead(t, st, key); !bytes.Equal(got, data) {
		t.Fatal("read back other bytes")
	}
	// Downloads seek (http.ServeContent answers ranges).
	f, _, err := st.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(8, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 7)
	if _, err := io.ReadFull(f, head); err != nil || string(head) != "receipt" {
		t.Fatalf("after Seek read %q, %v", head, err)
	}
	missing := blob.Key([]byte("never stored"))
	if ok, err := st.Exists(ctx, missing); err != nil || ok {
		t.Fatalf("Exists(missing) = %v, %v; want false", ok, err)
	}
	if _, _, err := st.Open(ctx, missing); holdfast.ErrorCode(err) != holdfast.ENOTFOUND {
		t.Fatalf("Open(missing) = %v, want ENOTFOUND", err)
	}
	if _, _, err := st.Open(ctx, "../../etc/passwd"); holdfast.ErrorCode(err) != holdfast.EINVALID {
		t.Fatalf("Open(bad key) = %v, want EINVALID", err)
	}
}

func TestStore_PutOfStoredContentWritesNothing(t *testing.T) {
	st, srv, db := setup(t)
	ctx := context.Background()
	data := []byte("the same receipt twice")
	key, err := st.PutBytes(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	// Replace the object behind the store's back: a second put that wrote
	// would put the original bytes back.
	marker := []byte("written by the test")
	if _, err := srv.Client(t).PutObject(ctx, srv.Bucket, key, bytes.NewReader(marker), int64(len(marker)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutBytes(ctx, data); err != nil {
		t.Fatal(err)
	}
	staged, err := st.Stage(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitBatch(ctx, []*blob.Staged{staged}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, st, key); !bytes.Equal(got, marker) {
		t.Fatalf("object rewritten: %q", got)
	}
	if n := dbtest.MustCount(t, db, "SELECT count(*) FROM blobs WHERE key = $1", key); n != 1 {
		t.Fatalf("%d ledger rows for the key, want 1", n)
	}
}

func TestStore_CommitBatchStoresEachOnce(t *testing.T) {
	st, srv, db := setup(t)
	ctx := context.Background()
	var staged []*blob.Staged
	for i := range 40 {
		s, err := st.Stage(ctx, fmt.Appendf(nil, "receipt %d", i%25)) // 15 repeats
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, s)
	}
	if err := st.CommitBatch(ctx, staged); err != nil {
		t.Fatal(err)
	}
	for i, s := range staged {
		if got := mustRead(t, st, s.Key()); string(got) != fmt.Sprintf("receipt %d", i%25) {
			t.Fatalf("blob %d: %q", i, got)
		}
	}
	n := 0
	for obj := range srv.Client(t).ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		n++
	}
	if n != 25 {
		t.Fatalf("%d objects, want 25", n)
	}
	if got := dbtest.MustCount(t, db, "SELECT count(*) FROM blobs"); got != 25 {
		t.Fatalf("%d ledger rows, want 25", got)
	}
	// A blob staged by the local store has no bytes to send.
	local, err := blob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := local.Stage(ctx, []byte("local"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitBatch(ctx, []*blob.Staged{foreign}); err == nil {
		t.Fatal("committed a blob staged by another store")
	}
}

func TestStore_NewRefusesAMissingBucketOrWrongSecret(t *testing.T) {
	srv := s3test.MustStart(t)
	db := dbtest.MustOpenDB(t)
	ctx := context.Background()
	base := s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Ledger: postgres.NewBlobLedger(db)}
	if _, err := s3.New(ctx, base); err != nil {
		t.Fatal(err)
	}
	noBucket := base
	noBucket.Bucket = "no-such-bucket"
	if _, err := s3.New(ctx, noBucket); err == nil {
		t.Fatal("New accepted a missing bucket")
	}
	wrong := base
	wrong.SecretKey = "not-the-secret-at-all"
	_, err := s3.New(ctx, wrong)
	if err == nil {
		t.Fatal("New accepted a wrong secret")
	}
	if strings.Contains(err.Error(), wrong.SecretKey) {
		t.Fatalf("error shows the secret: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	cfg, err := s3.ParseURL("s3://receipts?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bucket != "receipts" || cfg.Endpoint != "http://127.0.0.1:9000" || cfg.Region != "eu-west-1" {
		t.Fatalf("ParseURL = %+v", cfg)
	}
	for _, bad := range []string{
		"receipts",
		"file:///var/blobs",
		"s3://?endpoint=http://127.0.0.1:9000",
		"s3://receipts",
		"s3://receipts/prefix?endpoint=http://127.0.0.1:9000",
		"s3://key:secret@receipts?endpoint=http://127.0.0.1:9000",
		"s3://receipts?endpoint=http://127.0.0.1:9000&secret=x",
	} {
		if _, err := s3.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}
