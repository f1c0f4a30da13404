package holdfast

import (
	"context"
	"time"
)

// TransferQuery filters GET /v1/transfers: every filter given must hold.
type TransferQuery struct {
	AccountID  string            // debit or credit account
	Status     string            // pending, posted, voided or expired
	CreatedGTE *time.Time        // created at or after
	CreatedLT  *time.Time        // created before
	AmountGTE  *int64            // at least
	AmountLTE  *int64            // at most
	Metadata   map[string]string // each key has this value
}

// MaxMetadataFilters bounds the metadata[key]=value filters of one query.
const MaxMetadataFilters = 5

// Validate returns EINVALID for a query that can match nothing sensible.
func (q TransferQuery) Validate() error {
	if q.AccountID != "" {
		if err := ValidID("account_id", q.AccountID); err != nil {
			return err
		}
	}
	switch {
	case q.Status != "" && !ValidStatus(q.Status):
		return Errorf(EINVALID, "status must be pending, posted, voided or expired")
	case q.AmountGTE != nil && *q.AmountGTE < 0, q.AmountLTE != nil && *q.AmountLTE < 0:
		return Errorf(EINVALID, "amount bounds must not be negative")
	case len(q.Metadata) > MaxMetadataFilters:
		return Errorf(EINVALID, "at most %d metadata filters", MaxMetadataFilters)
	}
	return ValidMetadata(q.Metadata)
}

// TransferSearcher finds a tenant's transfers.
type TransferSearcher interface {
	// SearchTransfers lists the tenant's transfers that match q, newest
	// first, a page at a time (next is "" on the last page). Each filter is
	// served by an index.
	SearchTransfers(ctx context.Context, tenantID string, q TransferQuery, page Page) (list []*Transfer, next string, err error)
	// UpdateTransferMetadata changes a transfer's metadata by key; the
	// only change a transfer allows besides a hold's status.
	UpdateTransferMetadata(ctx context.Context, tenantID, id string, patch MetadataPatch) (*Transfer, error)
}
