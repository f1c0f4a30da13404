package receipts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/blob/s3"
	"github.com/holdfast/holdfast/events"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/internal/testkit/s3test"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

type env struct {
	db      *postgres.DB
	nats    *natsconn.Conn
	blobs   *blob.Store
	bucket  *s3.Store // when set (setupBucket), the pipeline's store instead of blobs
	store   *postgres.ReceiptStore
	service *receipts.Service
	cfg     receipts.Config
	tenant  string
	lane    *overload.Lane
}

// setup returns a database with a tenant, an embedded JetStream with the
// streams, a blob store, and the outbox relay running (it carries jobs).
func setup(t *testing.T, cfg receipts.Config) *env {
	t.Helper()
	db := dbtest.MustOpenDB(t)
	nc, err := natsconn.Open(t.Context(), natsconn.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	blobs, err := blob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stream := events.StreamConfig{MaxBytes: 64 << 20}
	if _, err := events.EnsureStream(t.Context(), nc.JS, stream); err != nil {
		t.Fatal(err)
	}
	if _, err := receipts.EnsureStreams(t.Context(), nc.JS, cfg); err != nil {
		t.Fatal(err)
	}
	relay, err := events.NewRelay(db, nc.JS, events.RelayConfig{Stream: stream, Logger: quiet, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	relay.Start(context.Background())
	t.Cleanup(relay.Stop)
	lane, err := overload.NewLane(overload.LaneConfig{Name: "test", Size: 2, Queue: 1000})
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.NewReceiptStore(db)
	tn, _, err := postgres.NewTenantService(db).CreateTenant(t.Context(), holdfast.TenantCreate{Name: "Receipt Test Ltd"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, nats: nc, blobs: blobs, store: store, service: mustService(t, store, blobs, receipts.ServiceConfig{}),
		cfg: cfg, tenant: tn.ID, lane: lane}
}

// setupBucket is setup with the receipt images in a bucket of a real S3
// server, the blobs' claims in the test's database.
func setupBucket(t *testing.T, cfg receipts.Config) *env {
	t.Helper()
	e := setup(t, cfg)
	srv := s3test.MustStart(t)
	sc, err := s3.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	sc.AccessKey, sc.SecretKey, sc.Ledger = srv.AccessKey, srv.SecretKey, postgres.NewBlobLedger(e.db)
	if e.bucket, err = s3.New(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	e.service = mustService(t, e.store, e.bucket, receipts.ServiceConfig{})
	return e
}

// blobStore returns the pipeline's blob store.
func (e *env) blobStore() interface {
	receipts.BlobStore
	Exists(ctx context.Context, key string) (bool, error)
} {
	if e.bucket != nil {
		return e.bucket
	}
	return e.blobs
}

func (e *env) mustTransfer(t *testing.T, tenant string) string {
	t.Helper()
	accts := postgres.NewAccountService(e.db)
	a, _ := accts.CreateAccount(t.Context(), tenant, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true}, nil)
	b, _ := accts.CreateAccount(t.Context(), tenant, holdfast.AccountCreate{Currency: "USD"}, nil)
	out, _, err := postgres.NewTransferService(e.db).CreateTransfers(t.Context(), holdfast.TransferRequest{TenantID: tenant, Transfers: []holdfast.TransferCreate{
		{DebitAccountID: a.ID, CreditAccountID: b.ID, Amount: 1, Currency: "USD"}}})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].ID
}

func (e *env) worker(t *testing.T, nc *natsconn.Conn, configure ...func(*receipts.WorkerConfig)) *receipts.Worker {
	t.Helper()
	cfg := receipts.WorkerConfig{Config: e.cfg, Lane: e.lane, Logger: quiet}
	for _, f := range configure {
		f(&cfg)
	}
	w, err := receipts.NewWorker(nc.JS, e.store, e.blobStore(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

func (e *env) receipt(t *testing.T, id string) *holdfast.Receipt {
	t.Helper()
	r, err := e.service.FindReceipt(t.Context(), e.tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

func countRows(t *testing.T, db *postgres.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// An upload is queued, processed by a worker, and its variants served.
func TestReceipt_UploadProcessServe(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	e.worker(t, e.nats)
	tr := e.mustTransfer(t, e.tenant)
	img := media.Generate(800, 600, 1)
	r, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != holdfast.ReceiptQueued || r.Width != 800 || r.Format != "jpeg" {
		t.Fatalf("queued receipt = %+v", r)
	}
	eventually(t, "the receipt is ready", func() bool { return e.receipt(t, r.ID).Status == holdfast.ReceiptReady })
	got := e.receipt(t, r.ID)
	for name, max := range map[string]int{"thumbnail": 256, "medium": 1024} {
		v, ok := got.Variants[name]
		if !ok || v.Width > max || v.Height > max || v.ContentType != "image/jpeg" {
			t.Fatalf("variant %s = %+v", name, v)
		}
		f, meta, err := e.service.OpenVariant(t.Context(), e.tenant, r.ID, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if int64(len(b)) != meta.Size || blob.Key(b) != v.Key {
			t.Fatalf("%s: %d bytes, key %s; want %d, %s", name, len(b), blob.Key(b), meta.Size, v.Key)
		}
	}
	// Another tenant sees nothing of it.
	other, _, _ := postgres.NewTenantService(e.db).CreateTenant(t.Context(), holdfast.TenantCreate{Name: "other"}, nil)
	if _, err := e.service.FindReceipt(t.Context(), other.ID, r.ID); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("another tenant's receipt: %v", err)
	}
	if _, err := e.service.PutReceipt(t.Context(), other.ID, tr, bytes.NewReader(img)); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("a receipt on another tenant's transfer: %v", err)
	}
	// The same upload again changes nothing and queues nothing.
	jobs := countRows(t, e.db, "SELECT count(*) FROM outbox WHERE topic = 'jobs'")
	again, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(img))
	if err != nil || again.ID != r.ID || again.Status != holdfast.ReceiptReady {
		t.Fatalf("re-upload: %+v, %v", again, err)
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM outbox WHERE topic = 'jobs'"); n != jobs {
		t.Fatalf("the same image queued another job")
	}
	// Processing is deterministic: the same original gives the same variants.
	vs, err := media.Process(img, media.Options{Tenant: e.tenant, Date: got.CreatedAt}) // the worker has no tenant names here
	if err != nil {
		t.Fatal(err)
	}
	if blob.Key(vs.Medium.Data) != got.Variants["medium"].Key {
		t.Fatalf("processing the same image again gave another medium variant")
	}
}

// bomb is a PNG whose header declares 100,000 × 100,000 pixels.
func bomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.Gray{})
	png.Encode(&buf, img)
	b := buf.Bytes()
	// Rewrite IHDR width and height (bytes 16..23) and its CRC.
	copy(b[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	crc := crc32IEEE(b[12:29])
	copy(b[29:33], []byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
	return b
}

func crc32IEEE(b []byte) uint32 {
	crc := ^uint32(0)
	for _, x := range b {
		crc ^= uint32(x)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xedb88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// Bad uploads are refused before anything is stored.
func TestReceipt_RefusedUploadsStoreNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	tr := e.mustTransfer(t, e.tenant)
	huge := make([]byte, media.DefaultMaxBytes+1)
	copy(huge, media.Generate(10, 10, 1))
	for _, tc := range []struct {
		name  string
		body  []byte
		code  string
		cause error
	}{
		{"bomb", bomb(t), holdfast.EIMAGETOOLARGE, media.ErrTooManyPixels},
		{"oversized", huge, "", receipts.ErrTooLarge},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), holdfast.EINVALID, media.ErrFormat},
		{"text", []byte("hello, not an image"), holdfast.EINVALID, media.ErrFormat},
	} {
		_, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(tc.body))
		if !errors.Is(err, tc.cause) || tc.code != "" && !holdfast.IsCode(err, tc.code) {
			t.Errorf("%s: %v, want %s (%v)", tc.name, err, tc.code, tc.cause)
		}
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM receipts"); n != 0 {
		t.Fatalf("%d receipts stored from refused uploads", n)
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM outbox WHERE topic = 'jobs'"); n != 0 {
		t.Fatalf("%d jobs queued from refused uploads", n)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// An upload to an unknown transfer, or to another tenant's, is refused
// before its body is read: no blob is stored.
func TestReceipt_UploadToAnotherTenantsTransferStoresNoBlob(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	other, _, err := postgres.NewTenantService(e.db).CreateTenant(t.Context(), holdfast.TenantCreate{Name: "Other Ltd"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range []string{e.mustTransfer(t, other.ID), "0190a8a0-0000-7000-8000-000000000000"} {
		img := media.Generate(200, 100, int64(100+i))
		body := &countingReader{r: bytes.NewReader(img)}
		if _, err := e.service.PutReceipt(t.Context(), e.tenant, tr, body); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
			t.Fatalf("upload %d: %v, want %s", i, err, holdfast.ENOTFOUND)
		}
		if body.n != 0 {
			t.Errorf("upload %d: %d bytes of the body read for a transfer not the tenant's", i, body.n)
		}
		if ok, err := e.blobs.Exists(t.Context(), blob.Key(img)); ok || err != nil {
			t.Fatalf("upload %d: its image was stored (%v)", i, err)
		}
	}
}

// storedBytes returns the sum of the sizes of the tenant's receipts and the
// total the database keeps for its quota.
func storedBytes(t *testing.T, e *env) (sum, kept int64) {
	t.Helper()
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT coalesce(sum(size), 0) FROM receipts WHERE tenant_id = $1", e.tenant).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT coalesce((SELECT bytes FROM receipt_usage WHERE tenant_id = $1), 0)", e.tenant).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	return sum, kept
}

// An upload that would take the tenant past its quota is refused with
// EQUOTA and stores nothing; a replacement that does not grow the total is
// accepted, and frees what it no longer takes.
func TestReceipt_UploadPastQuotaStoresNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	big, other, small := media.Generate(400, 300, 11), media.Generate(400, 300, 12), media.Generate(80, 60, 13)
	if len(small) >= len(other) || len(small) >= len(big) {
		t.Fatalf("images of %d, %d and %d bytes: the small one is not the smallest", len(big), len(other), len(small))
	}
	quota := int64(len(big) + len(small))
	svc := mustService(t, e.store, e.blobs, receipts.ServiceConfig{Quota: quota})
	tr1, tr2 := e.mustTransfer(t, e.tenant), e.mustTransfer(t, e.tenant)
	put := func(tr string, img []byte) error {
		_, err := svc.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(img))
		return err
	}
	if err := put(tr1, big); err != nil {
		t.Fatal(err)
	}
	if err := put(tr2, other); !holdfast.IsCode(err, holdfast.EQUOTA) {
		t.Fatalf("an upload past the quota: %v, want %s", err, holdfast.EQUOTA)
	}
	if ok, err := e.blobs.Exists(t.Context(), blob.Key(other)); ok || err != nil {
		t.Fatalf("the refused image was stored (%v)", err)
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM receipts WHERE transfer_id = $1", tr2); n != 0 {
		t.Fatalf("a receipt was recorded for the refused upload")
	}
	if err := put(tr2, small); err != nil {
		t.Fatalf("an upload that reaches the quota exactly: %v", err)
	}
	if err := put(tr1, big); err != nil {
		t.Fatalf("the same image again at the quota: %v", err)
	}
	if sum, kept := storedBytes(t, e); sum != quota || kept != quota {
		t.Fatalf("stored %d bytes, kept %d, want %d", sum, kept, quota)
	}
	// Replacing the big image with the small one frees the difference.
	if err := put(tr1, small); err != nil {
		t.Fatalf("a smaller replacement at the quota: %v", err)
	}
	if sum, kept := storedBytes(t, e); sum != 2*int64(len(small)) || kept != sum {
		t.Fatalf("after the replacement: stored %d bytes, kept %d, want %d", sum, kept, 2*len(small))
	}
}

// Concurrent uploads near the quota, new ones and replacements, never take
// the tenant's stored bytes past it, and the total kept for the quota is
// the sum of its receipts' sizes.
func TestReceipt_ConcurrentUploadsNeverExceedQuota(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	const uploads, transfers = 32, 12
	imgs := make([][]byte, uploads)
	for i := range imgs {
		imgs[i] = media.Generate(160+i, 120, int64(1000+i))
	}
	var quota int64
	for _, img := range imgs[:transfers/2] {
		quota += int64(len(img))
	}
	trs := make([]string, transfers)
	for i := range trs {
		trs[i] = e.mustTransfer(t, e.tenant)
	}
	svc := mustService(t, e.store, e.blobs, receipts.ServiceConfig{Quota: quota})
	var wg sync.WaitGroup
	var accepted, refused atomic.Int64
	start := make(chan struct{})
	for i, img := range imgs {
		wg.Go(func() {
			<-start
			_, err := svc.PutReceipt(context.Background(), e.tenant, trs[i%transfers], bytes.NewReader(img))
			switch {
			case err == nil:
				accepted.Add(1)
			case holdfast.IsCode(err, holdfast.EQUOTA):
				refused.Add(1)
			default:
				t.Errorf("upload %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	sum, kept := storedBytes(t, e)
	if sum > quota || kept != sum {
		t.Fatalf("stored %d bytes against a quota of %d; %d kept for the quota", sum, quota, kept)
	}
	if accepted.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d accepted, %d refused: the test did not reach the quota", accepted.Load(), refused.Load())
	}
	t.Logf("%d accepted, %d refused; %d of %d bytes stored", accepted.Load(), refused.Load(), sum, quota)
}

// A job that keeps failing for a reason that may pass (here, a store that
// is down) is tried MaxDeliveries times with growing gaps, then
// dead-lettered and its receipt marked failed; a redrive queues it again.
func TestReceipt_TransientFailureDeadLettersThenRedrive(t *testing.T) {
	t.Parallel()
	cfg := receipts.Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 10 * time.Second, AckWait: 5 * time.Second}
	e := setup(t, cfg)
	var mu sync.Mutex
	var tries []time.Time
	var healed atomic.Bool
	e.worker(t, e.nats, func(c *receipts.WorkerConfig) {
		c.Process = func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error) {
			mu.Lock()
			tries = append(tries, time.Now())
			mu.Unlock()
			if healed.Load() {
				return media.ProcessContext(ctx, src, opts)
			}
			return media.Variants{}, errors.New("scratch space unavailable")
		}
	})
	tr := e.mustTransfer(t, e.tenant)
	r, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(media.Generate(300, 200, 2)))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the receipt fails", func() bool { return e.receipt(t, r.ID).Status == holdfast.ReceiptFailed })
	got := e.receipt(t, r.ID)
	if got.Attempts != 5 || got.LastError == "" {
		t.Fatalf("failed receipt = %+v, want 5 attempts and the last error", got)
	}
	mu.Lock()
	if len(tries) != 5 {
		t.Fatalf("%d tries, want 5", len(tries))
	}
	for k := 1; k < len(tries); k++ {
		// After delivery k the retry waits at least half of base × 2^(k-1)
		// (equal jitter), which is at least the whole of the step before:
		// the gaps grow.
		floor := (cfg.BackoffBase << (k - 1)) / 2
		if gap := tries[k].Sub(tries[k-1]); gap < floor {
			t.Errorf("gap after delivery %d = %s, shorter than its backoff floor %s", k, gap, floor)
		}
	}
	mu.Unlock()
	dls := receipts.NewDeadLetters(e.store, e.nats.JS, cfg)
	list, _, err := dls.ListDeadLetters(t.Context(), e.tenant, holdfast.Page{})
	if err != nil || len(list) != 1 || list[0].ReceiptID != r.ID || list[0].Deliveries != 5 {
		t.Fatalf("dead letters = %+v, %v", list, err)
	}
	if other, _, _ := dls.ListDeadLetters(t.Context(), "0190a8a0-0000-7000-8000-000000000000", holdfast.Page{}); len(other) != 0 {
		t.Fatalf("another tenant's dead letters: %+v", other)
	}
	dead, _ := e.nats.JS.Stream(t.Context(), receipts.DefaultDeadStream)
	if info, _ := dead.Info(t.Context()); info.State.Msgs != 1 {
		t.Fatalf("jobs-dead holds %d messages, want 1", info.State.Msgs)
	}

	healed.Store(true)
	if _, err := dls.Redrive(t.Context(), list[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the redriven receipt is ready", func() bool { return e.receipt(t, r.ID).Status == holdfast.ReceiptReady })
	if _, err := dls.Redrive(t.Context(), list[0].ID); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Fatalf("a second redrive: %v", err)
	}
	if info, _ := dead.Info(t.Context()); info.State.Msgs != 0 {
		t.Fatalf("jobs-dead holds %d messages after the redrive", info.State.Msgs)
	}
}

// corruptImages are uploads whose header is sound (they pass intake) but
// whose pixels cannot be decoded, whichever decoder reads them.
func corruptImages(t *testing.T) map[string][]byte {
	t.Helper()
	jpg := media.Generate(300, 200, 2)
	sos := bytes.Index(jpg, []byte{0xff, 0xda}) // start of scan: the entropy-coded data follows
	badJPEG := bytes.Clone(jpg)
	copy(badJPEG[sos+200:], []byte{0xff, 0x01}) // a marker where only 0xff00 may be
	src := image.NewRGBA(image.Rect(0, 0, 120, 80))
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	pngb := buf.Bytes()
	badPNG := bytes.Clone(pngb)
	badPNG[bytes.Index(pngb, []byte("IDAT"))+40] ^= 0x55 // inside the compressed pixels
	imgs := map[string][]byte{
		"truncated jpeg": jpg[:len(jpg)*2/3], "corrupt jpeg": badJPEG,
		"truncated png": pngb[:len(pngb)*2/3], "corrupt png": badPNG,
	}
	for name, b := range imgs {
		if _, err := media.Inspect(b); err != nil {
			t.Fatalf("%s is refused at intake: %v", name, err)
		}
	}
	return imgs
}

// An image that cannot be decoded fails at once: one processing attempt,
// the receipt failed with the reason, the job terminated (gone from the
// work queue, so never delivered again) and listed as a dead letter.
func TestReceipt_UndecodableImageFailsAtOnce(t *testing.T) {
	t.Parallel()
	cfg := receipts.Config{BackoffBase: 100 * time.Millisecond, MaxDeliveries: 5}
	e := setup(t, cfg)
	var calls atomic.Int64
	e.worker(t, e.nats, func(c *receipts.WorkerConfig) {
		c.Process = func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error) {
			calls.Add(1)
			return media.ProcessContext(ctx, src, opts)
		}
	})
	ids := map[string]string{}
	for name, img := range corruptImages(t) {
		r, err := e.service.PutReceipt(t.Context(), e.tenant, e.mustTransfer(t, e.tenant), bytes.NewReader(img))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ids[name] = r.ID
	}
	for name, id := range ids {
		eventually(t, name+" fails", func() bool { return e.receipt(t, id).Status == holdfast.ReceiptFailed })
		if got := e.receipt(t, id); got.Attempts != 1 || !strings.Contains(got.LastError, "not a readable") {
			t.Errorf("%s: %d attempts, last error %q; want 1 attempt and the decoder's reason", name, got.Attempts, got.LastError)
		}
	}
	jobs, err := e.nats.JS.Stream(t.Context(), e.cfg.WithDefaults().Stream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the jobs leave the work queue", func() bool {
		info, err := jobs.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	if n := calls.Load(); n != int64(len(ids)) {
		t.Fatalf("%d processing attempts for %d undecodable images, want one each", n, len(ids))
	}
	list, _, err := receipts.NewDeadLetters(e.store, e.nats.JS, cfg).ListDeadLetters(t.Context(), e.tenant, holdfast.Page{})
	if err != nil || len(list) != len(ids) {
		t.Fatalf("%d dead letters (%v), want %d", len(list), err, len(ids))
	}
	for _, d := range list {
		if d.Deliveries != 1 {
			t.Errorf("dead letter of receipt %s after %d deliveries, want 1", d.ReceiptID, d.Deliveries)
		}
	}
}

// Backoff grows, never comes at once, and stays under its cap.
func TestBackoff(t *testing.T) {
	cfg := receipts.Config{BackoffBase: time.Second, BackoffMax: time.Minute}
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 1000; trial++ {
		prev := time.Duration(0)
		for n := 1; n <= 10; n++ {
			d := receipts.Backoff(cfg, n, r)
			step := min(cfg.BackoffBase<<(n-1), cfg.BackoffMax)
			if d < step/2 || d > step {
				t.Fatalf("delivery %d: %s outside [%s, %s]", n, d, step/2, step)
			}
			if d < prev/2 {
				t.Fatalf("delivery %d: %s after %s", n, d, prev)
			}
			prev = d
		}
	}
}

// However many workers (three replicas of 50 each) and however deep the
// queue (500 jobs), no more than Cap jobs are in flight.
func TestWorkers_GlobalCap(t *testing.T) {
	t.Parallel()
	const jobs, limit = 500, 10
	e := setup(t, receipts.Config{Cap: limit, Workers: 50})
	var inFlight, peak, done atomic.Int64
	track := func(c *receipts.WorkerConfig) {
		c.OnStart = func() {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		}
		c.OnDone = func() { inFlight.Add(-1); done.Add(1) }
		c.Process = func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error) {
			time.Sleep(5 * time.Millisecond) // long enough for deliveries to overlap
			return media.Variants{}, nil
		}
	}
	tr := e.mustTransfer(t, e.tenant)
	img := media.Generate(16, 16, 3)
	// Queue all jobs first: receipts on distinct transfers.
	for i := 0; i < jobs; i++ {
		if i > 0 {
			tr = e.mustTransfer(t, e.tenant)
		}
		if _, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(img)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		nc, err := e.nats.Connect(t.Context(), fmt.Sprintf("replica-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.NC.Close() })
		e.worker(t, nc, track)
	}
	eventually(t, "every receipt is ready", func() bool {
		return countRows(t, e.db, "SELECT count(*) FROM receipts WHERE status = 'ready'") == jobs
	})
	if p := peak.Load(); p > limit {
		t.Fatalf("%d jobs in flight at once, over the cap of %d", p, limit)
	} else if p < limit/2 {
		t.Fatalf("at most %d jobs in flight: the test did not load the cap of %d", p, limit)
	}
	t.Logf("peak in flight %d (cap %d), %d job runs for %d jobs", peak.Load(), limit, done.Load(), jobs)
}

// A worker that dies mid-job (its connection gone, no more heartbeats, no
// ack) has its job delivered again after the visibility timeout, and the
// job is finished once.
func TestWorker_DiesMidJob(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{AckWait: time.Second})
	doomed, err := e.nats.Connect(t.Context(), "doomed")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	e.worker(t, doomed, func(c *receipts.WorkerConfig) {
		c.Workers = 1
		c.Process = func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error) {
			once.Do(func() { close(started) })
			for doomed.NC.IsConnected() { // "killed": its connection is closed under it
				time.Sleep(10 * time.Millisecond)
			}
			return media.Variants{}, errors.New("killed")
		}
	})
	tr := e.mustTransfer(t, e.tenant)
	r, err := e.service.PutReceipt(t.Context(), e.tenant, tr, bytes.NewReader(media.Generate(64, 48, 4)))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	doomed.NC.Close()
	var finished atomic.Int64
	e.worker(t, e.nats, func(c *receipts.WorkerConfig) {
		c.OnDone = func() { finished.Add(1) }
	})
	eventually(t, "the job is redelivered and finished", func() bool { return e.receipt(t, r.ID).Status == holdfast.ReceiptReady })
	if got := e.receipt(t, r.ID); got.Attempts != 2 {
		t.Fatalf("attempts = %d, want 2 (the dead worker's and the survivor's)", got.Attempts)
	}
	time.Sleep(1500 * time.Millisecond) // past another visibility timeout
	if n := finished.Load(); n != 1 {
		t.Fatalf("the surviving worker ran the job %d times, want 1", n)
	}
}

// mustService returns a started receipt service, stopped when t ends.
func mustService(t *testing.T, store receipts.ServiceStore, blobs receipts.BlobStore, cfg receipts.ServiceConfig) *receipts.Service {
	t.Helper()
	svc, err := receipts.NewService(store, blobs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(context.Background())
	t.Cleanup(svc.Stop)
	return svc
}
