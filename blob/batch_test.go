package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/blob"
)

// A batch stores each blob under its content's key, once however often it
// appears, alongside one stored before, and leaves no temporary file.
func TestPutBatch_StoresEachUnderItsKey(t *testing.T) {
	s := MustStore(t)
	old := []byte("stored before the batch")
	if _, err := s.PutBytes(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	var bs [][]byte
	for i := range 50 {
		bs = append(bs, fmt.Appendf(nil, "blob %d", i))
	}
	bs = append(bs, bs[3], old)
	keys, err := s.PutBatch(context.Background(), bs)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bs {
		if keys[i] != blob.Key(b) {
			t.Fatalf("key %d is %s, want %s", i, keys[i], blob.Key(b))
		}
		if got := MustRead(t, s, keys[i]); !bytes.Equal(got, b) {
			t.Fatalf("blob %d reads %q, want %q", i, got, b)
		}
	}
	blobs, temps := files(t, s)
	if len(blobs) != 51 || len(temps) != 0 {
		t.Fatalf("%d blobs and temporaries %v, want 51 and none", len(blobs), temps)
	}
}

// A staged blob is invisible until committed, and a discarded one leaves
// nothing behind.
func TestStage_InvisibleUntilCommitted(t *testing.T) {
	s := MustStore(t)
	ctx := context.Background()
	kept, err := s.Stage(ctx, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := s.Stage(ctx, []byte("dropped"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, kept.Key()); ok {
		t.Fatal("a staged blob exists before its commit")
	}
	dropped.Discard()
	if err := s.CommitBatch(ctx, []*blob.Staged{kept}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, kept.Key()); !ok {
		t.Fatal("a committed blob does not exist")
	}
	if ok, _ := s.Exists(ctx, dropped.Key()); ok {
		t.Fatal("a discarded blob exists")
	}
	if blobs, temps := files(t, s); len(blobs) != 1 || len(temps) != 0 {
		t.Fatalf("blobs %v and temporaries %v, want one blob and none", blobs, temps)
	}
}

// A batch whose context has ended stores nothing and removes its
// temporary files.
func TestPutBatch_CancelledStoresNothing(t *testing.T) {
	s := MustStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	staged, err := s.Stage(ctx, []byte("never committed"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.CommitBatch(ctx, []*blob.Staged{staged}); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit after cancel: %v, want context.Canceled", err)
	}
	if blobs, temps := files(t, s); len(blobs) != 0 || len(temps) != 0 {
		t.Fatalf("blobs %v and temporaries %v after a cancelled batch", blobs, temps)
	}
}
