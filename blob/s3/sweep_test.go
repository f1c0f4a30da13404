package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/blob/s3"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
)

// refs is a test's record of which keys are referred to, the InUse of its
// sweeps.
type refs struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refs) add(key string, d int) {
	r.mu.Lock()
	r.n[key] += d
	r.mu.Unlock()
}

func (r *refs) inUse(_ context.Context, keys []string) (map[string]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := map[string]bool{}
	for _, k := range keys {
		used[k] = r.n[k] > 0
	}
	return used, nil
}

func TestSweep_DeletesOnlyUnreferencedBlobsPastTheGrace(t *testing.T) {
	st, _, db := setup(t)
	ctx := context.Background()
	var clock atomic.Int64 // seconds after start
	start := time.Now()
	db.Now = func() time.Time { return start.Add(time.Duration(clock.Load()) * time.Second) }
	old, kept, young := []byte("old, unreferenced"), []byte("old, referenced"), []byte("young, unreferenced")
	for _, b := range [][]byte{old, kept} {
		if _, err := st.PutBytes(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	clock.Store(3600)
	if _, err := st.PutBytes(ctx, young); err != nil {
		t.Fatal(err)
	}
	r := &refs{n: map[string]int{blob.Key(kept): 1}}
	grace := 30 * time.Minute
	stats, err := st.Sweep(ctx, db.Now().Add(-grace), r.inUse)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Checked != 2 || stats.Deleted != 1 || stats.Bytes != int64(len(old)) {
		t.Fatalf("sweep %+v, want 2 checked, 1 deleted of %d bytes", stats, len(old))
	}
	for b, want := range map[string]bool{string(old): false, string(kept): true, string(young): true} {
		if ok, err := st.Exists(ctx, blob.Key([]byte(b))); err != nil || ok != want {
			t.Errorf("%q exists = %v, %v; want %v", b, ok, err, want)
		}
	}
	if n := dbtest.MustCount(t, db, "SELECT count(*) FROM blobs WHERE key = $1", blob.Key(old)); n != 0 {
		t.Fatal("the deleted blob's ledger row is left")
	}
	// Stored again, the deleted content comes back and is claimed afresh.
	if _, err := st.PutBytes(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, st, blob.Key(old)); !bytes.Equal(got, old) {
		t.Fatalf("read %q", got)
	}
	if stats, err := st.Sweep(ctx, db.Now().Add(-grace), r.inUse); err != nil || stats.Deleted != 0 {
		t.Fatalf("second sweep %+v, %v; want nothing deleted", stats, err)
	}
}

// racer is the state TestSweep_NeverDeletesABlobPutConcurrently's
// writers and sweepers share.
type racer struct {
	st       *s3.Store
	r        *refs
	at       func(tick int64) time.Time
	clock    atomic.Int64
	mu       sync.Mutex
	inflight map[int]int64 // writer → clock when its put began
}

// put stores data as writer w, refers to it, reads it back and drops the
// reference; an error is a blob deleted while referred to.
func (x *racer) put(ctx context.Context, w int, data []byte) error {
	x.mu.Lock()
	x.inflight[w] = x.clock.Load()
	x.mu.Unlock()
	key, err := x.st.PutBytes(ctx, data)
	if err == nil {
		x.r.add(key, 1)
	}
	x.mu.Lock()
	delete(x.inflight, w)
	x.mu.Unlock()
	if err != nil {
		return err
	}
	defer x.r.add(key, -1)
	f, _, err := x.st.Open(ctx, key)
	if err != nil {
		return err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return err
	}
	if !bytes.Equal(b.Bytes(), data) {
		return fmt.Errorf("read %q", b.Bytes())
	}
	return nil
}

// sweep advances the clock and sweeps with a cutoff no later than the
// start of any put in flight, and returns how many blobs it deleted.
func (x *racer) sweep(ctx context.Context) (int, error) {
	x.mu.Lock()
	cutoff := x.clock.Add(1)
	for _, t0 := range x.inflight {
		cutoff = min(cutoff, t0)
	}
	x.mu.Unlock()
	stats, err := x.st.Sweep(ctx, x.at(cutoff), x.r.inUse)
	return stats.Deleted, err
}

// TestSweep_NeverDeletesABlobPutConcurrently races writers that put a few
// contents over and over, refer to them and check that they can be read,
// against sweeps in several goroutines that delete whatever is
// unreferenced. The test's clock stands for the grace period: a sweep's
// cutoff is never later than the start of a put still in flight, which is
// what a grace longer than any put's time to record its key guarantees.
// Each sweep advances the clock, so blobs are deleted between the puts of
// the same content, and a put often claims a key a sweep is deleting.
func TestSweep_NeverDeletesABlobPutConcurrently(t *testing.T) {
	st, _, db := setup(t)
	ctx := context.Background()
	start := time.Now()
	x := &racer{st: st, r: &refs{n: map[string]int{}}, inflight: map[int]int64{},
		at: func(tick int64) time.Time { return start.Add(time.Duration(tick) * time.Second) }}
	db.Now = func() time.Time { return x.at(x.clock.Load()) }

	const writers, sweepers, contents, minDeleted, maxPuts = 8, 3, 4, 40, 4000
	var deleted, puts atomic.Int64
	var failed atomic.Bool
	var wg, sw sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; !failed.Load() && puts.Load() < maxPuts && deleted.Load() < minDeleted; i++ {
				data := fmt.Appendf(nil, "content %d", (w+i)%contents)
				if err := x.put(ctx, w, data); err != nil {
					t.Errorf("put of %q, referred to, then: %v", data, err)
					failed.Store(true)
				}
				puts.Add(1)
			}
		})
	}
	done := make(chan struct{})
	for range sweepers {
		sw.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n, err := x.sweep(ctx)
				if err != nil {
					t.Error(err)
					failed.Store(true)
					return
				}
				deleted.Add(int64(n))
			}
		})
	}
	wg.Wait()
	close(done)
	sw.Wait()
	if failed.Load() {
		return
	}
	if deleted.Load() < minDeleted {
		t.Fatalf("sweeps deleted %d blobs in %d puts: the race was not run", deleted.Load(), puts.Load())
	}
	t.Logf("%d puts, %d blobs deleted meanwhile", puts.Load(), deleted.Load())
	// Unreferenced and past the grace, every blob goes, with its row.
	if _, err := x.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range contents {
		if ok, err := st.Exists(ctx, blob.Key(fmt.Appendf(nil, "content %d", i))); err != nil || ok {
			t.Errorf("content %d exists = %v, %v after the last sweep", i, ok, err)
		}
	}
	if n := dbtest.MustCount(t, db, "SELECT count(*) FROM blobs"); n != 0 {
		t.Fatalf("%d ledger rows left", n)
	}
}
