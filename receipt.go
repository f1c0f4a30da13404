package holdfast

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Receipt statuses.
const (
	ReceiptQueued     = "queued"
	ReceiptProcessing = "processing"
	ReceiptReady      = "ready"
	ReceiptFailed     = "failed"
)

// Receipt is an image attached to a transfer, and its processed variants.
type Receipt struct {
	ID         string                    `json:"id"`
	TenantID   string                    `json:"-"`
	TransferID string                    `json:"transfer_id"`
	Status     string                    `json:"status"`
	Format     string                    `json:"format"`
	Width      int                       `json:"width"`
	Height     int                       `json:"height"`
	Size       int64                     `json:"size"`
	Variants   map[string]ReceiptVariant `json:"variants"`
	Attempts   int                       `json:"attempts"`
	LastError  string                    `json:"last_error,omitempty"`
	CreatedAt  time.Time                 `json:"created_at"`
	UpdatedAt  time.Time                 `json:"updated_at"`

	OriginalKey string `json:"-"` // blob key of the upload
}

// ReceiptVariant is one stored rendition of a receipt.
type ReceiptVariant struct {
	Key         string `json:"-"` // blob key
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Size        int64  `json:"size"`
	URL         string `json:"url,omitempty"` // set by the HTTP layer
}

// ReceiptOriginal is the name of the upload as a variant.
const ReceiptOriginal = "original"

// ReceiptJob is the message that asks a worker to process a receipt.
type ReceiptJob struct {
	ID          string `json:"id"` // unique per upload: the outbox row's id
	TenantID    string `json:"tenant"`
	ReceiptID   string `json:"receipt_id"`
	OriginalKey string `json:"original_key"`
}

// DeadLetter is a job that failed every delivery.
type DeadLetter struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	ReceiptID  string     `json:"receipt_id"`
	LastError  string     `json:"last_error"`
	Deliveries int        `json:"deliveries"`
	CreatedAt  time.Time  `json:"created_at"`
	RedrivenAt *time.Time `json:"redriven_at,omitempty"`
}

// CheckReceiptQuota returns EQUOTA if a tenant storing an image of size
// bytes, in place of an image of replaced bytes (0 for none), would take its
// stored receipt bytes from used past quota; a negative quota is none. A
// change that does not grow the total is always allowed, so a tenant over a
// lowered quota can still replace an image with a smaller one.
func CheckReceiptQuota(used, replaced, size, quota int64) error {
	if quota < 0 || size <= replaced || used-replaced+size <= quota {
		return nil
	}
	return &Error{Code: EQUOTA,
		Message:    fmt.Sprintf("the tenant's receipt images would take %d bytes, past its quota of %d bytes", used-replaced+size, quota),
		Extensions: map[string]any{"quota_bytes": quota, "used_bytes": used, "upload_bytes": size}}
}

// ReceiptService stores uploads and reads receipts.
type ReceiptService interface {
	// PutReceipt stores an uploaded image for a transfer and queues its
	// processing. ENOTFOUND for an unknown transfer (before the body is
	// read); EINVALID, ETOOLARGE (HTTP) or EIMAGETOOLARGE for images refused
	// before decoding; EQUOTA when the tenant's stored receipt bytes would
	// pass its quota. A refused upload stores nothing.
	PutReceipt(ctx context.Context, tenantID, transferID string, body io.Reader) (*Receipt, error)
	FindReceipt(ctx context.Context, tenantID, id string) (*Receipt, error)
	// OpenVariant opens a stored rendition ("original", "thumbnail", "medium").
	OpenVariant(ctx context.Context, tenantID, id, variant string) (io.ReadSeekCloser, ReceiptVariant, error)
}

// DeadLetterService lists and redrives dead letters (admin).
type DeadLetterService interface {
	ListDeadLetters(ctx context.Context, tenantID string, page Page) ([]*DeadLetter, string, error)
	Redrive(ctx context.Context, id string) (*DeadLetter, error)
}
