package s3

import (
	"context"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast/holdfast/blob"
)

// sweepBatch is how many keys one InUse call is asked about.
const sweepBatch = 1000

// Sweep deletes the blobs last claimed before cutoff that inUse does not
// report in use, and returns what it did. Choose the cutoff as for
// [blob.Store.Sweep]: older than the longest time between a put and the
// recording of its key. Candidates come from the ledger, not from a listing
// of the bucket; each is deleted under its ledger row's lock, after the
// claim is checked again (see the package documentation), so several
// sweeps in several replicas may run at once. An object the ledger has no
// row for is never deleted.
func (s *Store) Sweep(ctx context.Context, cutoff time.Time, inUse blob.InUse) (blob.SweepStats, error) {
	var st blob.SweepStats
	after := ""
	for {
		keys, err := s.cfg.Ledger.StaleBlobs(ctx, cutoff, after, sweepBatch)
		if err != nil {
			return st, fmt.Errorf("blob sweep: %w", err)
		}
		if len(keys) == 0 {
			return st, nil
		}
		after = keys[len(keys)-1]
		used, err := inUse(ctx, keys)
		if err != nil {
			return st, fmt.Errorf("blob sweep: %w", err)
		}
		st.Checked += len(keys)
		for _, key := range keys {
			if used[key] {
				continue
			}
			var size int64
			dropped, err := s.cfg.Ledger.DropBlob(ctx, key, cutoff, func(ctx context.Context) error {
				var err error
				size, err = s.remove(ctx, key)
				return err
			})
			if err != nil {
				return st, fmt.Errorf("blob sweep %s: %w", key, err)
			}
			if dropped && size >= 0 {
				st.Deleted++
				st.Bytes += size
			}
		}
	}
}

// remove deletes key's object and returns its size, or -1 if there was
// none (deleted by a sweep that crashed before it deleted the row).
func (s *Store) remove(ctx context.Context, key string) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	switch {
	case notFound(err):
		return -1, nil
	case err != nil:
		return -1, err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return -1, err
	}
	return info.Size, nil
}
