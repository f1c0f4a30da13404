package receipts

import (
	"context"
	"io"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
)

// The pipeline's views of the receipt store, one for each of its parts.
// postgres.ReceiptStore implements them all; app wires it.

// ServiceStore is the upload service's view of the receipt store
// (postgres.ReceiptStore: checks and reads on the API's pool, batches on
// the intake's own).
type ServiceStore interface {
	// ReceiptUsage returns the bytes of receipt images the tenant has
	// stored and the size of the image the transfer's receipt has now (0
	// for none). ENOTFOUND if the transfer is not the tenant's.
	ReceiptUsage(ctx context.Context, tenantID, transferID string) (used, current int64, err error)
	// IntakeStore records batches of uploads.
	IntakeStore
	// FindReceipt returns the tenant's receipt; ENOTFOUND for another
	// tenant's or an unknown one.
	FindReceipt(ctx context.Context, tenantID, id string) (*holdfast.Receipt, error)
}

// WorkerStore is the workers' view of the receipt store
// (postgres.ReceiptStore on the workers' own pool).
type WorkerStore interface {
	// StartJob marks the job's receipt processing and returns it, or nil
	// and no error when there is nothing to do: the receipt is gone,
	// ready already, or replaced by a newer upload.
	StartJob(ctx context.Context, job holdfast.ReceiptJob) (*holdfast.Receipt, error)
	// FinishJob stores the variants and marks the receipt ready, in one
	// transaction; it does nothing if the receipt was replaced meanwhile.
	FinishJob(ctx context.Context, job holdfast.ReceiptJob, variants map[string]holdfast.ReceiptVariant) error
	// RecordFailure keeps the last error of a job that will be tried again.
	RecordFailure(ctx context.Context, job holdfast.ReceiptJob, cause string) error
	// DeadLetter marks the job's receipt failed and records the dead
	// letter, with deadSeq, its sequence in the dead-letter stream, in one
	// transaction.
	DeadLetter(ctx context.Context, job holdfast.ReceiptJob, raw []byte, cause string, deliveries int, deadSeq uint64) (*holdfast.DeadLetter, error)
}

// DeadLetterStore is the dead-letter admin's view of the receipt store.
type DeadLetterStore interface {
	// ListDeadLetters lists dead letters not yet redriven, newest first,
	// only the tenant's when tenantID is not empty, and the cursor of the
	// next page.
	ListDeadLetters(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.DeadLetter, string, error)
	// Redrive marks a dead letter redriven and queues a new job for its
	// receipt, in one transaction, and returns the dead letter and its
	// sequence in the dead-letter stream. ENOTFOUND for an unknown or
	// already redriven dead letter.
	Redrive(ctx context.Context, id string) (*holdfast.DeadLetter, uint64, error)
}

// BlobRefs is the blob collector's view of the receipt store.
type BlobRefs interface {
	// BlobsInUse reports which of keys a receipt refers to, as its
	// original or as one of its variants.
	BlobsInUse(ctx context.Context, keys []string) (map[string]bool, error)
}

// ConnStats is the collector's view of the workers' database pool
// (postgres.DB).
type ConnStats interface {
	// ConnStats returns the pool's connections: acquired, open, and the
	// most it opens.
	ConnStats() (acquired, open, max int32)
}

// BlobStore is the pipeline's view of the content-addressed store of
// receipt images: blob.Store (a local directory, one node) or s3.Store (a
// bucket every replica shares). app wires one of them.
type BlobStore interface {
	// Stage prepares b for CommitBatch without making it durable.
	Stage(ctx context.Context, b []byte) (*blob.Staged, error)
	// CommitBatch makes staged blobs durable together.
	CommitBatch(ctx context.Context, staged []*blob.Staged) error
	// PutBytes stores b and returns its key; stored content is not
	// written again.
	PutBytes(ctx context.Context, b []byte) (string, error)
	// Open returns the blob under key and its size; ENOTFOUND if none.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, int64, error)
	// Sweep deletes the blobs stored before cutoff that inUse does not
	// claim.
	Sweep(ctx context.Context, cutoff time.Time, inUse blob.InUse) (blob.SweepStats, error)
}
