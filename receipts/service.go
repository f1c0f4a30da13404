package receipts

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
)

// ErrTooLarge is in the chain of the error of an upload over the size
// limit (errors.Is); the HTTP layer answers it with 413.
var ErrTooLarge = media.ErrTooLarge

// DefaultQuota is a tenant's receipt quota unless configured: 10 GiB.
const DefaultQuota = 10 << 30

// ServiceConfig configures the intake of uploads.
type ServiceConfig struct {
	// Limits bound each upload. Zero fields: media's defaults (10 MiB,
	// 40 megapixels).
	Limits media.Limits
	// Quota is the most bytes of receipt images (the originals uploaded)
	// one tenant may have stored, across every replica. Default
	// DefaultQuota; negative: no quota.
	Quota int64
	// Intake batches uploads' durability (see Intake).
	Intake IntakeConfig
}

// WithDefaults returns c with zero fields set to their defaults.
func (c ServiceConfig) WithDefaults() ServiceConfig {
	c.Limits = c.Limits.WithDefaults()
	if c.Quota == 0 {
		c.Quota = DefaultQuota
	}
	c.Intake = c.Intake.WithDefaults()
	return c
}

// Service stores uploads and reads receipts; it implements
// holdfast.ReceiptService.
type Service struct {
	store  ServiceStore
	blobs  BlobStore
	cfg    ServiceConfig
	intake *Intake
}

var _ holdfast.ReceiptService = (*Service)(nil)

// NewService returns the service; it stores uploads once started. It
// returns an error for an invalid configuration.
func NewService(store ServiceStore, blobs BlobStore, cfg ServiceConfig) (*Service, error) {
	cfg = cfg.WithDefaults()
	in, err := NewIntake(store, blobs, cfg.Quota, cfg.Intake)
	if err != nil {
		return nil, err
	}
	return &Service{store: store, blobs: blobs, cfg: cfg, intake: in}, nil
}

// Start runs the intake's batches until Stop.
func (s *Service) Start(ctx context.Context) { s.intake.Start(ctx) }

// Stop refuses new uploads and finishes the batches in hand. Idempotent;
// safe before Start.
func (s *Service) Stop() { s.intake.Stop() }

// Busy reports whether uploads are arriving fast enough that the workers
// should yield the CPU to intake (IntakeConfig.BusyRate).
func (s *Service) Busy() bool { return s.intake.Busy() }

// PutReceipt checks that the transfer is the tenant's before it reads the
// body, then reads at most the size limit, checks the format and the
// dimensions from the header alone (a decompression bomb is refused without
// allocating its pixels) and the tenant's quota, stores the original and
// queues its processing.
// Errors: ENOTFOUND for an unknown transfer or another tenant's; EINVALID
// for a format that is not JPEG, PNG or WebP or a corrupt header
// (media.ErrFormat, media.ErrCorrupt); ErrTooLarge in the chain past the
// size limit; EIMAGETOOLARGE past the pixel limit; EQUOTA past the quota.
func (s *Service) PutReceipt(ctx context.Context, tenantID, transferID string, body io.Reader) (*holdfast.Receipt, error) {
	if holdfast.ValidID("transfer id", transferID) != nil {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "transfer not found")
	}
	transferID = holdfast.CanonicalID(transferID)
	used, current, err := s.store.ReceiptUsage(ctx, tenantID, transferID)
	if err != nil {
		return nil, err
	}
	b, err := s.cfg.Limits.ReadAll(body)
	if err != nil {
		return nil, err
	}
	info, err := s.cfg.Limits.Inspect(b)
	if err != nil {
		if errors.Is(err, media.ErrTooManyPixels) {
			return nil, &holdfast.Error{Code: holdfast.EIMAGETOOLARGE, Message: holdfast.ErrorMessage(err), Err: err}
		}
		return nil, err
	}
	// Refused here, nothing is stored. Two uploads may both pass this check;
	// the batch that records the receipt checks again, atomically, and a
	// blob it then refuses is left to the blob collector.
	if err := holdfast.CheckReceiptQuota(used, current, int64(len(b)), s.cfg.Quota); err != nil {
		return nil, err
	}
	// The blob and the rows are made durable in a batch with concurrent
	// uploads; the answer waits for both.
	staged, err := s.blobs.Stage(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("store receipt image: %w", err)
	}
	r, err := s.intake.Put(ctx, staged, &holdfast.Receipt{
		TenantID: tenantID, TransferID: transferID,
		Format: string(info.Format), Width: info.Width, Height: info.Height, Size: int64(len(b)),
	})
	if err != nil {
		return nil, err
	}
	withOriginal(r)
	return r, nil
}

// withOriginal lists the upload itself among the receipt's variants.
func withOriginal(r *holdfast.Receipt) {
	r.Variants[holdfast.ReceiptOriginal] = holdfast.ReceiptVariant{Key: r.OriginalKey,
		ContentType: media.Format(r.Format).ContentType(), Width: r.Width, Height: r.Height, Size: r.Size}
}

// FindReceipt returns the tenant's receipt.
func (s *Service) FindReceipt(ctx context.Context, tenantID, id string) (*holdfast.Receipt, error) {
	r, err := s.store.FindReceipt(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	withOriginal(r)
	return r, nil
}

// OpenVariant opens one rendition of the tenant's receipt: "original"
// always, "thumbnail" and "medium" once it is ready. ENOTFOUND otherwise.
func (s *Service) OpenVariant(ctx context.Context, tenantID, id, variant string) (io.ReadSeekCloser, holdfast.ReceiptVariant, error) {
	r, err := s.FindReceipt(ctx, tenantID, id)
	if err != nil {
		return nil, holdfast.ReceiptVariant{}, err
	}
	v, ok := r.Variants[variant]
	if !ok {
		return nil, holdfast.ReceiptVariant{}, holdfast.Errorf(holdfast.ENOTFOUND, "receipt %s has no %q variant (status %s)", r.ID, variant, r.Status)
	}
	f, _, err := s.blobs.Open(ctx, v.Key)
	if err != nil {
		return nil, holdfast.ReceiptVariant{}, fmt.Errorf("open receipt variant: %w", err)
	}
	return f, v, nil
}
