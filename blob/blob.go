package blob

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
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// KeyLen is the length of a key: a hex SHA-256.
const KeyLen = 2 * sha256.Size

// staleTemp is the age past which New removes temporary files: no Put runs
// that long, so an older one was left by a crash.
const staleTemp = 24 * time.Hour

// Store is a content-addressed blob store in a directory. It is safe for
// concurrent use, also by several processes sharing the directory.
type Store struct {
	dir string

	// durable holds keys whose name this process has made durable (file
	// and directories fsynced), so a repeated Put of them syncs nothing;
	// dirs holds the fan-out directories known durable. Both are caches:
	// forgetting an entry only costs a sync.
	mu      sync.Mutex
	durable map[string]struct{}
	dirs    map[string]struct{}
}

// maxDurable bounds the durable-key cache; past it, it starts over.
const maxDurable = 1 << 16

// New returns a Store in dir, creating dir (mode 0750) if needed, puts back
// the blobs a crashed [Store.Sweep] had set aside, and removes temporary
// files that crashed writers left more than a day ago. It returns an
// error if dir cannot be created.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("blob: empty directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	s := &Store{dir: dir, durable: map[string]struct{}{}, dirs: map[string]struct{}{}}
	s.restoreTombs()
	s.removeStaleTemps(time.Now().Add(-staleTemp))
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// ValidKey reports whether key is a well-formed key: 64 lowercase hex digits.
// Only such keys reach the file system, so no key can name a path outside the
// store.
func ValidKey(key string) bool {
	if len(key) != KeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if !isHex(key[i]) {
			return false
		}
	}
	return true
}

// Key returns the key of b: the lowercase hex SHA-256 of its bytes.
func Key(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// path returns the final path of a valid key.
func (s *Store) path(key string) string {
	return filepath.Join(s.dir, key[0:2], key[2:4], key)
}

func invalidKey(key string) error {
	return holdfast.Errorf(holdfast.EINVALID, "invalid blob key %q: want %d lowercase hex digits", key, KeyLen)
}

// Put stores the bytes read from r until io.EOF and returns their key. Content
// already stored is not written again, but its modification time is set to
// now: a blob Put returns was modified no earlier than the call, which is
// what keeps it from a concurrent [Store.Sweep] until the caller has
// recorded its key. It returns r's error, or ctx's (both
// wrapped), leaving nothing behind; and any file-system error. The caller
// bounds r's size.
func (s *Store) Put(ctx context.Context, r io.Reader) (key string, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return "", fmt.Errorf("blob put: %w", err)
	}
	defer func() {
		// On success the blob is linked under its final name; the temporary
		// name goes either way.
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r}); err != nil {
		return "", fmt.Errorf("blob put: %w", err)
	}
	key = hex.EncodeToString(h.Sum(nil))
	if err := s.commit(ctx, tmp, key); err != nil {
		return "", fmt.Errorf("blob put %s: %w", key, err)
	}
	return key, nil
}

// PutBytes stores b and returns its key; if the key is already stored it
// writes nothing but the blob's modification time. It returns ctx's error
// (wrapped) if ctx ends first, and any file-system error.
func (s *Store) PutBytes(ctx context.Context, b []byte) (string, error) {
	key := Key(b)
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("blob put: %w", err)
	}
	switch err := touch(s.path(key)); {
	case err == nil && s.known(key):
		return key, nil
	case err == nil:
		if err := s.syncDirs(key); err != nil {
			return "", fmt.Errorf("blob put %s: %w", key, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("blob put %s: %w", key, err)
	}
	s.forget(key) // swept since this process stored it
	got, err := s.Put(ctx, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	if got != key {
		return "", fmt.Errorf("blob put: key %s, want %s", got, key) // unreachable
	}
	return key, nil
}

// commit makes the written temporary file tmp durable under key's final name,
// unless that name already exists.
func (s *Store) commit(ctx context.Context, tmp *os.File, key string) error {
	final := s.path(key)
	switch err := touch(final); {
	case err == nil:
		return s.syncDirs(key) // stored before: nothing is rewritten
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o440); err != nil { // blobs are immutable
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// Link never replaces: if a concurrent Put won the race, its blob (the
	// same bytes) stays and this one is dropped with the temporary name.
	switch err := os.Link(tmp.Name(), final); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		// Stored meanwhile by a concurrent Put.
	default:
		// A file system without hard links: rename is just as atomic, but
		// replaces a concurrent writer's identical, complete file.
		if err := os.Rename(tmp.Name(), final); err != nil {
			return err
		}
	}
	return s.syncDirs(key)
}

// touch sets the modification time of the file at path to now.
func touch(path string) error {
	now := time.Now()
	return os.Chtimes(path, now, now)
}

// forget drops key from the durable-key cache.
func (s *Store) forget(key string) {
	s.mu.Lock()
	delete(s.durable, key)
	s.mu.Unlock()
}

// known reports whether this process made key durable already.
func (s *Store) known(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.durable[key]
	return ok
}

// syncDirs makes key's name durable: its directory is fsynced, and the
// directories above it unless this process has synced them since it made
// or found them (a new fan-out directory's own entry must be durable too).
// A Put that finds the name already there syncs as well, since the Put that
// linked it (maybe in another process) may not have synced yet: a caller
// that records the key after Put returns must find the blob after a crash.
// Once synced, the key is remembered and a repeated Put syncs nothing.
func (s *Store) syncDirs(key string) error {
	dir := filepath.Dir(s.path(key))
	if err := syncPath(dir); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(dir), s.dir} {
		s.mu.Lock()
		_, ok := s.dirs[d]
		s.mu.Unlock()
		if ok {
			continue
		}
		if err := syncPath(d); err != nil {
			return err
		}
		s.mu.Lock()
		s.dirs[d] = struct{}{}
		s.mu.Unlock()
	}
	s.mu.Lock()
	if len(s.durable) >= maxDurable {
		s.durable = map[string]struct{}{}
	}
	s.durable[key] = struct{}{}
	s.mu.Unlock()
	return nil
}

// syncPath fsyncs a file or a directory.
func syncPath(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open returns the blob stored under key, positioned at its start, and its
// size; the caller closes it. It returns an EINVALID error for a malformed
// key, ENOTFOUND if no blob has that key, and ctx's error if it has ended.
func (s *Store) Open(ctx context.Context, key string) (io.ReadSeekCloser, int64, error) {
	if !ValidKey(key) {
		return nil, 0, invalidKey(key)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("blob open: %w", err)
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, holdfast.Errorf(holdfast.ENOTFOUND, "blob %s not found", key)
	} else if err != nil {
		return nil, 0, fmt.Errorf("blob open: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blob open: %w", err)
	}
	return f, fi.Size(), nil
}

// Exists reports whether a blob is stored under key. It returns an EINVALID
// error for a malformed key, ctx's error if it has ended, and any file-system
// error other than the blob's absence.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if !ValidKey(key) {
		return false, invalidKey(key)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("blob exists: %w", err)
	}
	_, err := os.Stat(s.path(key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("blob exists: %w", err)
}

// removeStaleTemps removes temporary files modified before cutoff. Younger
// ones may belong to a Put in progress, in this process or another.
func (s *Store) removeStaleTemps(cutoff time.Time) {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
}

// ctxReader stops a copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
