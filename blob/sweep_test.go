package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/blob"
)

// age sets the modification time of key's blob to d ago.
func age(t *testing.T, s *blob.Store, key string, d time.Duration) {
	t.Helper()
	then := time.Now().Add(-d)
	if err := os.Chtimes(filepath.Join(s.Dir(), key[0:2], key[2:4], key), then, then); err != nil {
		t.Fatal(err)
	}
}

// openStore opens a store in dir, as another process sharing it would.
func openStore(t *testing.T, dir string) *blob.Store {
	t.Helper()
	s, err := blob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustPut(t *testing.T, s *blob.Store, b []byte) string {
	t.Helper()
	key, err := s.PutBytes(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func exists(t *testing.T, s *blob.Store, key string) bool {
	t.Helper()
	ok, err := s.Exists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// inUse reports the given keys in use.
func inUse(keys ...string) blob.InUse {
	return func(_ context.Context, asked []string) (map[string]bool, error) {
		used := map[string]bool{}
		for _, k := range asked {
			for _, u := range keys {
				if k == u {
					used[k] = true
				}
			}
		}
		return used, nil
	}
}

func sweep(t *testing.T, s *blob.Store, grace time.Duration, used blob.InUse) blob.SweepStats {
	t.Helper()
	st, err := s.Sweep(context.Background(), time.Now().Add(-grace), used)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A sweep deletes the blobs older than its cutoff that nothing uses, and
// only those.
func TestSweep_DeletesOnlyOldUnused(t *testing.T) {
	s := MustStore(t)
	oldUnused := mustPut(t, s, []byte("old, unused"))
	oldUsed := mustPut(t, s, []byte("old, used"))
	young := mustPut(t, s, []byte("young, unused"))
	alsoOld := mustPut(t, s, []byte("also old, unused"))
	for _, k := range []string{oldUnused, oldUsed, alsoOld} {
		age(t, s, k, 48*time.Hour)
	}
	// Something else in a fan-out directory is not a blob and is left alone.
	stray := filepath.Join(s.Dir(), oldUnused[0:2], oldUnused[2:4], "notes.txt")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	st := sweep(t, s, 24*time.Hour, inUse(oldUsed))
	want := blob.SweepStats{Checked: 3, Deleted: 2, Bytes: int64(len("old, unused") + len("also old, unused"))}
	if st != want {
		t.Fatalf("sweep = %+v, want %+v", st, want)
	}
	for key, want := range map[string]bool{oldUnused: false, alsoOld: false, oldUsed: true, young: true} {
		if got := exists(t, s, key); got != want {
			t.Errorf("blob %.8s exists = %v, want %v", key, got, want)
		}
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("the stray file: %v", err)
	}
	if _, temps := files(t, s); len(temps) != 0 {
		t.Errorf("left behind: %v", temps)
	}
	if string(MustRead(t, s, oldUsed)) != "old, used" {
		t.Error("the used blob changed")
	}
}

// Storing content that is already there makes it young again, whichever
// way Put finds it stored: so a key Put returns survives a sweep whose
// cutoff is older than the call.
func TestPut_RenewsStoredBlob(t *testing.T) {
	dir := t.TempDir()
	content := []byte("stored long ago, about to be referred to again")
	first := openStore(t, dir)
	key := mustPut(t, first, content)

	puts := map[string]func() error{
		"PutBytes, known to this process": func() error { _, err := first.PutBytes(context.Background(), content); return err },
		"PutBytes, found on disk": func() error {
			other, err := blob.New(dir)
			if err != nil {
				return err
			}
			_, err = other.PutBytes(context.Background(), content)
			return err
		},
		"Put": func() error {
			_, err := first.Put(context.Background(), bytes.NewReader(content))
			return err
		},
	}
	for name, put := range puts {
		age(t, first, key, 48*time.Hour)
		if err := put(); err != nil {
			t.Fatal(err)
		}
		if st := sweep(t, first, time.Hour, inUse()); st.Deleted != 0 || !exists(t, first, key) {
			t.Fatalf("%s: the sweep after it deleted the blob (%+v)", name, st)
		}
	}
}

// A blob swept after this process stored it (by this process or another
// sharing the directory) is written again by the next Put of its content.
func TestPutBytes_AfterSweepWritesAgain(t *testing.T) {
	dir := t.TempDir()
	mine, theirs := openStore(t, dir), openStore(t, dir)
	content := []byte("swept, then uploaded again")
	for _, sweeper := range []*blob.Store{mine, theirs} {
		key := mustPut(t, mine, content)
		age(t, mine, key, 48*time.Hour)
		if st := sweep(t, sweeper, time.Hour, inUse()); st.Deleted != 1 {
			t.Fatalf("sweep = %+v, want the blob deleted", st)
		}
		if got := mustPut(t, mine, content); got != key || string(MustRead(t, mine, key)) != string(content) {
			t.Fatalf("after a sweep, PutBytes did not store the blob again")
		}
	}
}

// A Put between a sweep's listing and its deletion keeps the blob: the
// sweep finds it modified after its cutoff and puts it back.
func TestSweep_PutDuringSweepKeepsBlob(t *testing.T) {
	s := MustStore(t)
	content := []byte("uploaded again while the sweep decides")
	key := mustPut(t, s, content)
	age(t, s, key, 48*time.Hour)
	used := func(ctx context.Context, keys []string) (map[string]bool, error) {
		// The sweep has listed the blob as old: store it again now.
		if _, err := s.PutBytes(ctx, content); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if st := sweep(t, s, time.Hour, used); st.Deleted != 0 || st.Checked != 1 {
		t.Fatalf("sweep = %+v, want the blob checked and kept", st)
	}
	if string(MustRead(t, s, key)) != string(content) {
		t.Fatal("the blob changed")
	}
	if _, temps := files(t, s); len(temps) != 0 {
		t.Errorf("left behind: %v", temps)
	}
}

// A sweep that cannot learn what is in use deletes nothing.
func TestSweep_InUseErrorDeletesNothing(t *testing.T) {
	s := MustStore(t)
	key := mustPut(t, s, []byte("maybe used"))
	age(t, s, key, 48*time.Hour)
	boom := errors.New("database down")
	_, err := s.Sweep(context.Background(), time.Now(), func(context.Context, []string) (map[string]bool, error) { return nil, boom })
	if !errors.Is(err, boom) || !exists(t, s, key) {
		t.Fatalf("sweep: %v; blob exists %v", err, exists(t, s, key))
	}
}

// A blob a crashed sweep had set aside is back once the store opens again.
func TestNew_RestoresSetAsideBlobs(t *testing.T) {
	s := MustStore(t)
	key := mustPut(t, s, []byte("set aside when the sweep crashed"))
	if err := os.Rename(filepath.Join(s.Dir(), key[0:2], key[2:4], key), filepath.Join(s.Dir(), "tmp", "gc-"+key)); err != nil {
		t.Fatal(err)
	}
	again, err := blob.New(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if string(MustRead(t, again, key)) != "set aside when the sweep crashed" {
		t.Fatal("the blob was not put back")
	}
	if _, temps := files(t, again); len(temps) != 0 {
		t.Errorf("left behind: %v", temps)
	}
}

// Sweeps in two stores sharing a directory, racing with Puts of the content
// they are deleting: no call fails, nothing is left set aside, and every
// content Put during the race is there at the end (its last Put renewed it,
// and nothing renewed within the grace period is swept).
func TestSweep_ConcurrentWithPuts(t *testing.T) {
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir)
	var contents [][]byte
	for i := range 20 {
		c := []byte(fmt.Sprintf("content %d", i))
		contents = append(contents, c)
		age(t, a, mustPut(t, a, c), 48*time.Hour)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, s := range []*blob.Store{a, b} {
		wg.Go(func() {
			for range 20 {
				if _, err := s.Sweep(ctx, time.Now().Add(-time.Hour), inUse()); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				for _, c := range contents {
					if _, err := s.PutBytes(ctx, c); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range contents {
		if !exists(t, a, blob.Key(c)) || string(MustRead(t, a, blob.Key(c))) != string(c) {
			t.Errorf("%q is missing after the race", c)
		}
	}
	if _, temps := files(t, a); len(temps) != 0 {
		t.Errorf("left behind: %v", temps)
	}
}
