package receipts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/receipts"
)

// distinct returns n images, each a different file.
func distinct(n int) [][]byte {
	base := media.Generate(32, 24, 7)
	out := make([][]byte, n)
	for i := range out {
		out[i] = append(bytes.Clone(base), fmt.Sprintf("upload-%d", i)...)
	}
	return out
}

// One batch answers each upload with its own outcome, as the uploads one
// after the other would: an unknown transfer is ENOTFOUND, an upload past
// the quota EQUOTA, a second upload to a transfer in the same batch
// replaces the first, the same image again changes nothing; every
// accepted receipt has its job, and the tenant's stored bytes are the sum
// of the receipts it keeps.
func TestIntake_BatchAnswersEachUploadItsOwn(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	imgs := distinct(5)
	a, b, c := e.mustTransfer(t, e.tenant), e.mustTransfer(t, e.tenant), e.mustTransfer(t, e.tenant)
	unknown := "01936b2e-0000-7000-8000-000000000000"
	// Room for two images and a half: the first round (a, b, c) passes it,
	// the second (a replaced, b again) does not.
	quota := int64(len(imgs[1]) + len(imgs[2]) + len(imgs[3])/2)
	up := func(tr string, img []byte) *holdfast.Receipt {
		return &holdfast.Receipt{TenantID: e.tenant, TransferID: tr, OriginalKey: blobKey(t, e, img), Format: "jpeg", Width: 32, Height: 24, Size: int64(len(img))}
	}
	out, errs, err := e.store.QueueReceipts(t.Context(), []*holdfast.Receipt{
		up(a, imgs[0]),       // accepted
		up(unknown, imgs[1]), // ENOTFOUND
		up(a, imgs[1]),       // replaces the first, in a later round
		up(b, imgs[2]),       // accepted
		up(c, imgs[3]),       // EQUOTA: a third image passes the quota
		up(b, imgs[2]),       // the same image again: nothing to do
	}, quota)
	if err != nil {
		t.Fatal(err)
	}
	wantCodes := []string{"", holdfast.ENOTFOUND, "", "", holdfast.EQUOTA, ""}
	for i, code := range wantCodes {
		if code == "" && errs[i] != nil || code != "" && !holdfast.IsCode(errs[i], code) {
			t.Fatalf("upload %d: %v, want %q", i, errs[i], code)
		}
		if (code == "") != (out[i] != nil) {
			t.Fatalf("upload %d: receipt %v with error %v", i, out[i], errs[i])
		}
	}
	if out[0].ID != out[2].ID || out[2].OriginalKey != blobKey(t, e, imgs[1]) {
		t.Fatalf("the second upload to a transfer did not replace the first: %+v, %+v", out[0], out[2])
	}
	if out[3].ID != out[5].ID || out[5].Status != holdfast.ReceiptQueued {
		t.Fatalf("the same image again: %+v, want %+v", out[5], out[3])
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM receipts"); n != 2 {
		t.Fatalf("%d receipts, want 2", n)
	}
	// A job each for the three uploads written (the first upload's job is
	// skipped by the worker: its receipt no longer has that original).
	if n := jobsQueued(t, e); n != 3 {
		t.Fatalf("%d jobs queued, want 3", n)
	}
	used := countRows(t, e.db, "SELECT bytes::int FROM receipt_usage WHERE tenant_id = $1", e.tenant)
	if want := len(imgs[1]) + len(imgs[2]); used != want {
		t.Fatalf("the tenant's stored bytes are %d, want %d (the two receipts kept)", used, want)
	}
}

// blobKey stores img and returns its key.
func blobKey(t *testing.T, e *env, img []byte) string {
	t.Helper()
	key, err := e.blobs.PutBytes(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Uploads refused by intake, because its queue is full or because their
// caller gave up while queued, store nothing: no receipt, no job, no blob,
// no temporary file. An upload taken by a batch is answered with its
// outcome even past its caller's deadline.
func TestIntake_RefusalStoresNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	svc, err := receipts.NewService(e.store, e.blobs, receipts.ServiceConfig{Intake: receipts.IntakeConfig{MaxBatch: 1, QueueSize: 1, Committers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	imgs := distinct(2)
	tr1, tr2 := e.mustTransfer(t, e.tenant), e.mustTransfer(t, e.tenant)
	// Not started yet: the first upload waits in the queue, the second
	// finds it full.
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := svc.PutReceipt(ctx, e.tenant, tr1, bytes.NewReader(imgs[0]))
		first <- err
	}()
	// Until the first is queued, a second may take its place in the queue:
	// its short deadline then abandons it, and it tries again.
	eventually(t, "the queue is full", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := svc.PutReceipt(ctx, e.tenant, tr2, bytes.NewReader(imgs[1]))
		return holdfast.IsCode(err, holdfast.EOVERLOADED)
	})
	cancel()
	// The first was abandoned in the queue, or found it full.
	if err := <-first; !errorsIsContext(err) && !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("the first upload: %v, want the context's error or EOVERLOADED", err)
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM receipts"); n != 0 {
		t.Fatalf("%d receipts stored from refused uploads", n)
	}
	if n := countRows(t, e.db, "SELECT count(*) FROM outbox WHERE topic = 'jobs'"); n != 0 {
		t.Fatalf("%d jobs queued from refused uploads", n)
	}
	if files := filesUnder(t, e.blobs.Dir()); len(files) != 0 {
		t.Fatalf("refused uploads left files in the blob store: %v", files)
	}
	// Started, it answers what it takes, and a batch's outcome is the
	// answer even for a caller whose deadline has passed since.
	svc.Start(t.Context())
	r, err := svc.PutReceipt(t.Context(), e.tenant, tr2, bytes.NewReader(imgs[1]))
	if err != nil || r.Status != holdfast.ReceiptQueued {
		t.Fatalf("upload after start: %v, %v", r, err)
	}
}

func errorsIsContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// filesUnder lists the regular files under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Many concurrent uploads through intake are each stored once, with their
// own bytes, and queued once.
func TestIntake_ConcurrentUploadsEachStored(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	const n = 120
	imgs := distinct(n)
	trs := make([]string, n)
	for i := range trs {
		trs[i] = e.mustTransfer(t, e.tenant)
	}
	var wg sync.WaitGroup
	ids := make([]string, n)
	var failed atomic.Int64
	for i := range n {
		wg.Go(func() {
			r, err := e.service.PutReceipt(context.Background(), e.tenant, trs[i], bytes.NewReader(imgs[i]))
			if err != nil {
				t.Error(err)
				failed.Add(1)
				return
			}
			ids[i] = r.ID
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	for i, id := range ids {
		f, _, err := e.service.OpenVariant(t.Context(), e.tenant, id, holdfast.ReceiptOriginal)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		got.ReadFrom(f)
		f.Close()
		if !bytes.Equal(got.Bytes(), imgs[i]) {
			t.Fatalf("upload %d: the stored original is not its image", i)
		}
	}
	if got := jobsQueued(t, e); got != n {
		t.Fatalf("%d jobs, want %d", got, n)
	}
}

// While intake is busy, a replica's workers run one job at a time, each
// after a pause, and still make progress; once it is not, they run at
// full width again.
func TestWorker_YieldsToIntake(t *testing.T) {
	t.Parallel()
	const jobs = 60
	e := setup(t, receipts.Config{Cap: 20, Workers: 20})
	var busy atomic.Bool
	busy.Store(true)
	var inFlight, peakBusy, peakIdle atomic.Int64
	track := func(c *receipts.WorkerConfig) {
		c.Yield = busy.Load
		c.YieldPause = time.Millisecond
		c.OnStart = func() {
			n := inFlight.Add(1)
			peak := &peakIdle
			if busy.Load() {
				peak = &peakBusy
			}
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		}
		c.OnDone = func() { inFlight.Add(-1) }
		c.Process = func(ctx context.Context, src []byte, opts media.Options) (media.Variants, error) {
			time.Sleep(10 * time.Millisecond) // long enough for jobs to overlap
			return media.Variants{}, nil
		}
	}
	imgs := distinct(jobs)
	for i := range jobs {
		if _, err := e.service.PutReceipt(t.Context(), e.tenant, e.mustTransfer(t, e.tenant), bytes.NewReader(imgs[i])); err != nil {
			t.Fatal(err)
		}
	}
	e.worker(t, e.nats, track)
	ready := func() int { return countRows(t, e.db, "SELECT count(*) FROM receipts WHERE status = 'ready'") }
	eventually(t, "jobs are processed while yielding", func() bool { return ready() >= 10 })
	if p := peakBusy.Load(); p != 1 {
		t.Fatalf("%d jobs in flight at once while yielding, want 1", p)
	}
	busy.Store(false)
	eventually(t, "every receipt is ready", func() bool { return ready() == jobs })
	if p := peakIdle.Load(); p < 2 {
		t.Fatalf("at most %d job in flight once intake was idle: the workers did not go back to full width", p)
	}
}

// jobsQueued returns the jobs in the outbox and in the jobs stream, once
// the relay has moved every one of them (no worker takes them here).
func jobsQueued(t *testing.T, e *env) int {
	t.Helper()
	eventually(t, "the relay moved the jobs", func() bool {
		return countRows(t, e.db, "SELECT count(*) FROM outbox WHERE topic = 'jobs'") == 0
	})
	st, err := e.nats.JS.Stream(t.Context(), holdfast.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}
