package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// syncParallel bounds the fsyncs a batch runs at once: enough for the file
// system to commit them in a few journal transactions, few enough not to
// flood the machine with threads blocked in the kernel.
const syncParallel = 32

// PutBatch stores each of bs and returns their keys, in order: it stages
// them ([Store.Stage]) and commits them together ([Store.CommitBatch]).
func (s *Store) PutBatch(ctx context.Context, bs [][]byte) ([]string, error) {
	staged := make([]*Staged, 0, len(bs))
	defer func() {
		for _, st := range staged {
			st.Discard()
		}
	}()
	keys := make([]string, len(bs))
	for i, b := range bs {
		st, err := s.Stage(ctx, b)
		if err != nil {
			return nil, err
		}
		staged, keys[i] = append(staged, st), st.Key()
	}
	if err := s.CommitBatch(ctx, staged); err != nil {
		return nil, err
	}
	return keys, nil
}

// Staged is a blob written but not yet durable: a temporary file, or
// nothing when its content is stored already, or its bytes held in memory
// ([Hold]) for a store whose commit writes them elsewhere. [Store.CommitBatch]
// makes it durable; Discard drops it.
type Staged struct {
	key  string
	tmp  string // "" when the blob was stored already
	data []byte // set by Hold
}

// Hold returns b staged in memory, not written anywhere: the staging of a
// store whose commit sends the bytes over the network (an S3 bucket), where
// a temporary file would only be read back. The caller does not modify b
// until the staged blob is committed or discarded.
func Hold(b []byte) *Staged { return &Staged{key: Key(b), data: b} }

// Key returns the staged blob's key.
func (st *Staged) Key() string { return st.key }

// Bytes returns the bytes of a blob staged by [Hold], nil for one staged
// by [Store.Stage] or discarded.
func (st *Staged) Bytes() []byte { return st.data }

// Discard removes the staged blob's temporary file, if it still has one.
// Safe after CommitBatch and on nil.
func (st *Staged) Discard() {
	if st == nil {
		return
	}
	st.data = nil
	if st.tmp != "" {
		os.Remove(st.tmp)
		st.tmp = ""
	}
}

// Stage writes b to a temporary file, without syncing it, unless a blob
// with its key is stored already (then only its modification time is set
// to now, as [Store.PutBytes] does). Staging runs in many goroutines at
// once; the syncs are left to CommitBatch. It returns ctx's error
// (wrapped) and any file-system error, leaving nothing behind.
func (s *Store) Stage(ctx context.Context, b []byte) (*Staged, error) {
	st := &Staged{key: Key(b)}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob stage: %w", err)
	}
	switch err := touch(s.path(st.key)); {
	case err == nil:
		return st, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("blob stage %s: %w", st.key, err)
	}
	s.forget(st.key) // swept since this process stored it
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return nil, fmt.Errorf("blob stage: %w", err)
	}
	st.tmp = f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o440) // blobs are immutable
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		st.Discard()
		return nil, fmt.Errorf("blob stage: %w", err)
	}
	return st, nil
}

// CommitBatch makes staged blobs durable together: their files are
// fsynced, renamed under their names, and their directories fsynced, each
// round concurrently, so that a batch shares a few journal commits instead
// of paying two fsyncs a blob one after the other. A blob found stored
// already is synced too, unless this process made it durable before (the
// Put that linked it, maybe in another process, may not have synced yet).
// On error nothing is known durable: blobs placed before it are left to
// [Store.Sweep]. It returns ctx's error (wrapped) if ctx ends before the
// files are placed. The temporary files are removed either way.
func (s *Store) CommitBatch(ctx context.Context, staged []*Staged) error {
	defer func() {
		for _, st := range staged {
			st.Discard()
		}
	}()
	var fresh []*Staged
	var durable []string
	dirs := map[string]bool{}
	for _, st := range staged {
		if st.tmp == "" && s.known(st.key) {
			continue
		}
		if st.tmp != "" {
			fresh = append(fresh, st)
		}
		durable = append(durable, st.key)
		s.addDirs(dirs, st.key)
	}
	if err := eachParallel(len(fresh), func(i int) error { return syncPath(fresh[i].tmp) }); err != nil {
		return fmt.Errorf("blob commit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob commit: %w", err)
	}
	for _, st := range fresh {
		if err := s.place(st); err != nil {
			return fmt.Errorf("blob commit %s: %w", st.key, err)
		}
	}
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	if err := eachParallel(len(list), func(i int) error { return syncPath(list[i]) }); err != nil {
		return fmt.Errorf("blob commit: %w", err)
	}
	s.markDurable(list, durable)
	return nil
}

// place renames the synced temporary file under its key's name. A rename
// is one call where a link and an unlink are two, and replacing a
// concurrent writer's file replaces the same bytes.
func (s *Store) place(st *Staged) error {
	final := s.path(st.key)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return err
	}
	if err := os.Rename(st.tmp, final); err != nil {
		return err
	}
	st.tmp = ""
	return nil
}

// addDirs adds to dirs the directories that make key's name durable: its
// own, and those above it not known durable yet.
func (s *Store) addDirs(dirs map[string]bool, key string) {
	dir := filepath.Dir(s.path(key))
	dirs[dir] = true
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range []string{filepath.Dir(dir), s.dir} {
		if _, ok := s.dirs[d]; !ok {
			dirs[d] = true
		}
	}
}

// markDurable remembers synced fan-out directories and keys, as syncDirs
// does.
func (s *Store) markDurable(dirs, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range dirs {
		if d == s.dir || filepath.Dir(d) == s.dir {
			s.dirs[d] = struct{}{}
		}
	}
	if len(s.durable)+len(keys) >= maxDurable {
		s.durable = map[string]struct{}{}
	}
	for _, k := range keys {
		s.durable[k] = struct{}{}
	}
}

// eachParallel runs f(0) … f(n-1), at most syncParallel at once, and
// returns their errors joined.
func eachParallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, syncParallel)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
