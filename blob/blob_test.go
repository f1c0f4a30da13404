package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
)

// MustStore returns a store in a fresh temporary directory.
func MustStore(t testing.TB) *blob.Store {
	t.Helper()
	s, err := blob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MustRead returns the content and size of the blob key.
func MustRead(t testing.TB, s *blob.Store, key string) []byte {
	t.Helper()
	f, size, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("Open said %d bytes, read %d", size, len(b))
	}
	return b
}

// files returns the store's blob files (not temporaries) by path relative to dir.
func files(t testing.TB, s *blob.Store) (blobs, temps []string) {
	t.Helper()
	err := filepath.WalkDir(s.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.Dir(), p)
		if strings.HasPrefix(rel, "tmp"+string(filepath.Separator)) {
			temps = append(temps, rel)
		} else {
			blobs = append(blobs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blobs, temps
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestPutOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := MustStore(t)
	content := []byte("a receipt, or any bytes at all")
	key, err := s.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if key != sha(content) || key != blob.Key(content) {
		t.Fatalf("key = %s, want the hex SHA-256 %s", key, sha(content))
	}
	want := filepath.Join(s.Dir(), key[:2], key[2:4], key)
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("blob not at dir/ab/cd/key: %v", err)
	}
	if got := MustRead(t, s, key); !bytes.Equal(got, content) {
		t.Fatalf("read %q", got)
	}
	if ok, err := s.Exists(ctx, key); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	// Seekable, for http.ServeContent.
	f, _, _ := s.Open(ctx, key)
	defer f.Close()
	if _, err := f.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(f); !bytes.Equal(b, content[2:]) {
		t.Fatalf("after Seek(2): %q", b)
	}
	// PutBytes agrees, and the empty blob is a blob too.
	if k, err := s.PutBytes(ctx, content); k != key || err != nil {
		t.Fatalf("PutBytes = %s, %v", k, err)
	}
	empty, err := s.PutBytes(ctx, nil)
	if err != nil || empty != sha(nil) || len(MustRead(t, s, empty)) != 0 {
		t.Fatalf("empty blob: %s, %v", empty, err)
	}
	if _, temps := files(t, s); len(temps) != 0 {
		t.Errorf("temporaries left: %v", temps)
	}
}

func TestPutIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := MustStore(t)
	content := bytes.Repeat([]byte("idempotent "), 10000)
	key, err := s.PutBytes(ctx, content)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), key[:2], key[2:4], key)
	before, _ := os.Stat(path)
	for _, put := range []func() (string, error){
		func() (string, error) { return s.PutBytes(ctx, content) },
		func() (string, error) { return s.Put(ctx, bytes.NewReader(content)) },
	} {
		if k, err := put(); k != key || err != nil {
			t.Fatalf("second put = %s, %v", k, err)
		}
	}
	after, _ := os.Stat(path)
	// The same file, not a new one: only its modification time is renewed
	// (which keeps it from a sweep, see TestPut_RenewsStoredBlob).
	if !os.SameFile(before, after) || after.Size() != before.Size() {
		t.Error("the stored blob was rewritten")
	}
	if after.Mode().Perm()&0o222 != 0 {
		t.Errorf("blob mode %v, want read-only", after.Mode())
	}
}

// TestPutConcurrent puts the same content from many goroutines, and distinct
// contents beside it: every Put returns the right key, each content is stored
// exactly once and whole, and no temporary is left.
func TestPutConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := MustStore(t)
	same := bytes.Repeat([]byte{0xab}, 300<<10) // larger than one copy buffer
	const n = 64
	keys := make([]string, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i%2 == 0 {
				keys[i], errs[i] = s.PutBytes(ctx, same)
			} else {
				keys[i], errs[i] = s.Put(ctx, bytes.NewReader(same))
			}
		})
		wg.Go(func() { keys[n+i], errs[n+i] = s.PutBytes(ctx, fmt.Appendf(nil, "distinct %d", i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	for i := range n {
		if keys[i] != sha(same) {
			t.Fatalf("put %d of the same content: key %s", i, keys[i])
		}
		if want := sha(fmt.Appendf(nil, "distinct %d", i)); keys[n+i] != want {
			t.Fatalf("distinct put %d: key %s, want %s", i, keys[n+i], want)
		}
	}
	blobs, temps := files(t, s)
	if len(blobs) != n+1 || len(temps) != 0 {
		t.Fatalf("%d blobs and %d temporaries, want %d and 0", len(blobs), len(temps), n+1)
	}
	if !bytes.Equal(MustRead(t, s, sha(same)), same) {
		t.Fatal("the concurrently put blob is not whole")
	}
}

func TestKeyValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := MustStore(t)
	// A file just outside the store, which a traversal would reach.
	secret := filepath.Join(filepath.Dir(s.Dir()), "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	good := sha([]byte("x"))
	for _, key := range []string{
		"",
		"../secret",
		"../../../../etc/passwd",
		"ab/../../secret",
		strings.Repeat(".", 64),
		strings.Repeat("../", 21) + "x",      // 64 characters
		"/" + good[1:],                       // absolute
		good[:63],                            // too short
		good + "0",                           // too long
		strings.ToUpper(good),                // not canonical
		good[:32] + "\x00" + good[33:],       // NUL
		good[:62] + "g0",                     // not hex
		good[:2] + "/" + good[3:],            // separator
		filepath.Join("..", "..", good)[:64], // dots and a separator
	} {
		if blob.ValidKey(key) {
			t.Errorf("ValidKey(%q) = true", key)
		}
		if _, _, err := s.Open(ctx, key); !holdfast.IsCode(err, holdfast.EINVALID) {
			t.Errorf("Open(%q): err = %v, want EINVALID", key, err)
		}
		if _, err := s.Exists(ctx, key); !holdfast.IsCode(err, holdfast.EINVALID) {
			t.Errorf("Exists(%q): err = %v, want EINVALID", key, err)
		}
	}
	if !blob.ValidKey(good) {
		t.Errorf("ValidKey(%q) = false", good)
	}
	if _, _, err := s.Open(ctx, good); !holdfast.IsCode(err, holdfast.ENOTFOUND) {
		t.Errorf("Open of a missing blob: err = %v, want ENOTFOUND", err)
	}
	if ok, err := s.Exists(ctx, good); ok || err != nil {
		t.Errorf("Exists of a missing blob = %v, %v", ok, err)
	}
}

// TestPutPartialNeverVisible stops a Put midway, as a crash or a failed upload
// would: while it writes, and after it fails, nothing is visible under the
// final name, and nothing but the temporary (then nothing) is on disk.
func TestPutPartialNeverVisible(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("partial "), 100<<10)
	key := sha(content)
	for _, tt := range []struct {
		name string
		stop func(pw *io.PipeWriter, cancel context.CancelFunc)
		want error
	}{
		{"reader fails", func(pw *io.PipeWriter, _ context.CancelFunc) { pw.CloseWithError(io.ErrUnexpectedEOF) }, io.ErrUnexpectedEOF},
		{"context cancelled", func(pw *io.PipeWriter, cancel context.CancelFunc) {
			cancel()
			pw.Write(content[len(content)/2:]) // unblocks the copy, which then sees ctx
			pw.Close()
		}, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := MustStore(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() { _, err := s.Put(ctx, pr); pr.CloseWithError(err); done <- err }()
			if _, err := pw.Write(content[:len(content)/2]); err != nil {
				t.Fatal(err)
			}
			// Half written: the bytes are on disk, but only under a temporary name.
			if ok, _ := s.Exists(context.Background(), key); ok {
				t.Fatal("a half-written blob is visible")
			}
			if blobs, temps := files(t, s); len(blobs) != 0 || len(temps) != 1 {
				t.Fatalf("midway: blobs %v, temporaries %v; want none and one", blobs, temps)
			}
			tt.stop(pw, cancel)
			if err := <-done; !errors.Is(err, tt.want) {
				t.Fatalf("Put: err = %v, want %v", err, tt.want)
			}
			if blobs, temps := files(t, s); len(blobs) != 0 || len(temps) != 0 {
				t.Fatalf("after failing: blobs %v, temporaries %v; want none", blobs, temps)
			}
		})
	}
}

func TestNewRemovesStaleTemporaries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := blob.New(dir); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(dir, "tmp", "put-stale"), filepath.Join(dir, "tmp", "put-fresh")
	os.WriteFile(stale, []byte("left by a crash"), 0o600)
	os.WriteFile(fresh, []byte("a Put in progress"), 0o600)
	old := time.Now().Add(-25 * time.Hour)
	os.Chtimes(stale, old, old)
	if _, err := blob.New(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary removed: %v", err)
	}
}

func BenchmarkPut(b *testing.B) {
	s := MustStore(b)
	ctx := context.Background()
	content := make([]byte, 200<<10) // about a medium variant
	b.SetBytes(int64(len(content)))
	b.Run("new", func(b *testing.B) {
		var i uint64
		for b.Loop() {
			i++
			copy(content, fmt.Appendf(nil, "%d", i))
			if _, err := s.PutBytes(ctx, content); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("existing", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.PutBytes(ctx, content); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func Example() {
	dir, _ := os.MkdirTemp("", "blobs")
	defer os.RemoveAll(dir)
	s, err := blob.New(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	key, _ := s.PutBytes(ctx, []byte("hello"))
	again, _ := s.Put(ctx, strings.NewReader("hello"))
	f, size, _ := s.Open(ctx, key)
	defer f.Close()
	b, _ := io.ReadAll(f)
	fmt.Println(key == again, size, string(b))
	_, _, err = s.Open(ctx, "../../etc/passwd")
	fmt.Println(holdfast.ErrorCode(err))
	// Output:
	// true 5 hello
	// invalid-request
}
