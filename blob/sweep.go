package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// InUse reports which of keys something still refers to (a receipt, say);
// [Store.Sweep] never deletes those.
type InUse func(ctx context.Context, keys []string) (map[string]bool, error)

// SweepStats is what a sweep did.
type SweepStats struct {
	Checked int   // blobs older than the cutoff, asked about
	Deleted int   // of those, deleted
	Bytes   int64 // the deleted blobs' size
}

// sweepBatch is how many keys one InUse call is asked about.
const sweepBatch = 1000

// tombPrefix names, in dir/tmp, a blob a sweep has set aside to delete.
const tombPrefix = "gc-"

// Sweep deletes the blobs last modified before cutoff that inUse does not
// report in use, and returns what it did. A blob modified since (stored
// again by Put, which sets its modification time) is kept, so with a cutoff
// older than the longest time between a Put and the recording of its key, a
// sweep cannot delete a blob about to be referred to: choose the cutoff by
// that, not by how soon disk space should come back.
//
// Each blob to delete is first renamed aside (atomically: a Put that comes
// after finds no blob and writes it again), then its modification time is
// read once more: if a Put touched it between the listing and the rename,
// it is put back instead. Between the rename and the putting back, that
// blob cannot be opened. A crash mid-sweep leaves set-aside blobs, which
// [New] puts back. Several sweeps, in several processes, may run at once.
func (s *Store) Sweep(ctx context.Context, cutoff time.Time, inUse InUse) (SweepStats, error) {
	var st SweepStats
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		used, err := inUse(ctx, batch)
		if err != nil {
			return fmt.Errorf("blob sweep: %w", err)
		}
		st.Checked += len(batch)
		for _, key := range batch {
			if used[key] {
				continue
			}
			size, err := s.remove(key, cutoff)
			if err != nil {
				return fmt.Errorf("blob sweep %s: %w", key, err)
			}
			if size >= 0 {
				st.Deleted++
				st.Bytes += size
			}
		}
		batch = batch[:0]
		return nil
	}
	err := s.walk(func(key string, mod time.Time) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("blob sweep: %w", err)
		}
		if !mod.Before(cutoff) {
			return nil
		}
		batch = append(batch, key)
		if len(batch) < sweepBatch {
			return nil
		}
		return flush()
	})
	if err != nil {
		return st, err
	}
	return st, flush()
}

// walk calls fn with each stored blob's key and modification time.
func (s *Store) walk(fn func(key string, mod time.Time) error) error {
	level, err := fanOut(s.dir)
	if err != nil {
		return fmt.Errorf("blob sweep: %w", err)
	}
	for _, a := range level {
		inner, err := fanOut(filepath.Join(s.dir, a))
		if err != nil {
			return fmt.Errorf("blob sweep: %w", err)
		}
		for _, b := range inner {
			dir := filepath.Join(s.dir, a, b)
			entries, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("blob sweep: %w", err)
			}
			for _, e := range entries {
				key := e.Name()
				if !ValidKey(key) || key[0:2] != a || key[2:4] != b {
					continue
				}
				fi, err := e.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted meanwhile
				} else if err != nil {
					return fmt.Errorf("blob sweep: %w", err)
				}
				if err := fn(key, fi.ModTime()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// fanOut lists the fan-out directories (two lowercase hex digits) in dir.
func fanOut(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.IsDir() && len(n) == 2 && isHex(n[0]) && isHex(n[1]) {
			out = append(out, n)
		}
	}
	return out, nil
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// remove deletes key's blob unless it was modified at or after cutoff, and
// returns its size, or -1 if it kept it or found none.
func (s *Store) remove(key string, cutoff time.Time) (int64, error) {
	tomb := filepath.Join(s.dir, "tmp", tombPrefix+key)
	if err := os.Rename(s.path(key), tomb); errors.Is(err, fs.ErrNotExist) {
		return -1, nil // deleted by another sweep
	} else if err != nil {
		return -1, err
	}
	s.forget(key)
	fi, err := os.Stat(tomb)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil // a concurrent sweep set the same blob aside and deleted it
	} else if err != nil {
		return -1, err
	}
	if !fi.ModTime().Before(cutoff) {
		// Put touched it between the listing and the rename.
		return -1, s.restore(key, tomb)
	}
	if err := os.Remove(tomb); errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	} else if err != nil {
		return -1, err
	}
	return fi.Size(), nil
}

// restore puts a set-aside blob back under its name, unless a Put has
// stored it again meanwhile, and removes the set-aside name.
func (s *Store) restore(key, tomb string) error {
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o750); err != nil {
		return err
	}
	if err := os.Link(tomb, s.path(key)); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := s.syncDirs(key); err != nil {
		return err
	}
	if err := os.Remove(tomb); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// restoreTombs puts back the blobs a crashed sweep set aside: a Put may have
// touched one just before, and its caller may refer to it now. The next
// sweep deletes those still unreferenced.
func (s *Store) restoreTombs() {
	entries, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return
	}
	for _, e := range entries {
		key, ok := strings.CutPrefix(e.Name(), tombPrefix)
		if ok && ValidKey(key) {
			s.restore(key, filepath.Join(s.dir, "tmp", e.Name())) // best effort, like removeStaleTemps
		}
	}
}
