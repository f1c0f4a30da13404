package holdfast

import (
	"context"
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

// ReceiptService stores uploads and reads receipts.
type ReceiptService interface {
	// PutReceipt stores an uploaded image for a transfer and queues its
	// processing. ENOTFOUND for an unknown transfer; EINVALID, ETOOLARGE
	// (HTTP) or EIMAGETOOLARGE for images refused before decoding.
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
