package receipts_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/receipts"
)

// blobKeys returns the keys of a receipt's original and variants.
func blobKeys(r *holdfast.Receipt) []string {
	keys := []string{r.OriginalKey}
	for name, v := range r.Variants {
		if name != holdfast.ReceiptOriginal {
			keys = append(keys, v.Key)
		}
	}
	return keys
}

// The blobs of a replaced receipt image are swept, and only those: an image
// another receipt still shows stays, and so does every blob of the current
// images, which are served as before. An image swept and then uploaded
// again is stored again.
func TestBlobGC_SweepsOnlyWhatNoReceiptUses(t *testing.T) {
	t.Parallel()
	sweepsOnlyWhatNoReceiptUses(t, setup(t, receipts.Config{}))
}

// The same in a bucket: the blobs' ledger, not file times, keeps them.
func TestBlobGC_SweepsOnlyWhatNoReceiptUsesInABucket(t *testing.T) {
	t.Parallel()
	sweepsOnlyWhatNoReceiptUses(t, setupBucket(t, receipts.Config{}))
}

func sweepsOnlyWhatNoReceiptUses(t *testing.T, e *env) {
	e.worker(t, e.nats)
	gc, err := receipts.NewBlobGC(e.store, e.blobStore(), receipts.BlobGCConfig{Grace: time.Nanosecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	replaced, current, shared := media.Generate(640, 480, 1), media.Generate(640, 480, 2), media.Generate(640, 480, 3)
	upload := func(transfer string, img []byte) *holdfast.Receipt {
		t.Helper()
		r, err := e.service.PutReceipt(t.Context(), e.tenant, transfer, bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the receipt is ready", func() bool {
			got := e.receipt(t, r.ID)
			return got.Status == holdfast.ReceiptReady && got.OriginalKey == blob.Key(img)
		})
		return e.receipt(t, r.ID)
	}
	t1, t2 := e.mustTransfer(t, e.tenant), e.mustTransfer(t, e.tenant)
	old := upload(t1, replaced)
	upload(t1, shared)          // replaces it
	other := upload(t2, shared) // the same image on another transfer: the same blobs
	now := upload(e.mustTransfer(t, e.tenant), current)

	st, err := gc.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gone := blobKeys(old)
	if st.Deleted != len(gone) {
		t.Fatalf("sweep = %+v, want the replaced image's %d blobs deleted", st, len(gone))
	}
	for _, k := range gone {
		if ok, _ := e.blobStore().Exists(t.Context(), k); ok {
			t.Errorf("blob %.8s of the replaced image is still there", k)
		}
	}
	for _, r := range []*holdfast.Receipt{e.receipt(t, old.ID), other, now} {
		for name, v := range r.Variants {
			f, _, err := e.service.OpenVariant(t.Context(), e.tenant, r.ID, name)
			if err != nil {
				t.Fatalf("receipt %s, %s: %v", r.ID, name, err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if blob.Key(b) != v.Key {
				t.Fatalf("receipt %s, %s: read other bytes", r.ID, name)
			}
		}
	}

	// The swept image uploaded again is stored and processed again.
	again := upload(t1, replaced)
	for _, k := range blobKeys(again) {
		if ok, _ := e.blobStore().Exists(t.Context(), k); !ok {
			t.Errorf("blob %.8s of the image uploaded again is missing", k)
		}
	}
	if st, err := gc.Sweep(t.Context()); err != nil || st.Deleted != 0 {
		t.Fatalf("a sweep with every image in use: %+v, %v", st, err)
	}
}

// Started, the collector sweeps every interval until stopped.
func TestBlobGC_SweepsInTheBackground(t *testing.T) {
	t.Parallel()
	e := setup(t, receipts.Config{})
	gc, err := receipts.NewBlobGC(e.store, e.blobs, receipts.BlobGCConfig{Interval: 10 * time.Millisecond, Grace: time.Nanosecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := e.blobs.PutBytes(t.Context(), []byte("no receipt refers to this"))
	if err != nil {
		t.Fatal(err)
	}
	gc.Start(t.Context())
	eventually(t, "the unreferenced blob is swept", func() bool {
		ok, _ := e.blobs.Exists(t.Context(), orphan)
		return !ok
	})
	gc.Stop()
	gc.Stop() // idempotent
}
