package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

var _ holdfast.TransferSearcher = (*TransferService)(nil)

// SearchTransfers lists the tenant's transfers matching q, newest first.
// Without an account, it walks transfers_tenant_created (or, for a status
// other than posted, transfers_tenant_unposted) from the cursor; metadata
// filters use the GIN index transfers_metadata; with an account, it walks
// the account's entries by time (entries_account_time), one per transfer.
// The cursor is the last row's time and tie-breaker.
func (s *TransferService) SearchTransfers(ctx context.Context, tenantID string, q holdfast.TransferQuery, page holdfast.Page) ([]*holdfast.Transfer, string, error) {
	page, err := page.Normalize()
	if err != nil {
		return nil, "", err
	}
	if err := q.Validate(); err != nil {
		return nil, "", err
	}
	sql, args, err := searchSQL(tenantID, q, page)
	if err != nil {
		return nil, "", err
	}
	var ties []string
	var list []*holdfast.Transfer
	err = s.db.read(ctx, func(q reader) error {
		ties = ties[:0]
		rows, _ := q.Query(ctx, sql, args...)
		var err error
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*holdfast.Transfer, error) {
			var tie string
			t, err := scanTransferAfter(r, &tie)
			ties = append(ties, tie)
			return t, err
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("search transfers: %w", contextError(ctx, err))
	}
	next := ""
	if len(list) > page.Limit {
		list = list[:page.Limit]
		last := list[page.Limit-1]
		next = strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + ties[page.Limit-1]
	}
	return list, next, nil
}

// searchSQL builds the search's statement and arguments.
func searchSQL(tenantID string, q holdfast.TransferQuery, page holdfast.Page) (string, []any, error) {
	args := []any{tenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var where []string
	// With an account the rows come from its entries (e), one per transfer.
	at, tie, from := "t.created_at", "t.id", "transfers t"
	tieType := "uuid"
	if q.AccountID != "" {
		at, tie, tieType = "e.created_at", "e.id", "bigint"
		from = "entries e JOIN transfers t ON t.tenant_id = $1 AND t.id = e.transfer_id"
		where = append(where, "e.account_id = "+arg(holdfast.CanonicalID(q.AccountID)))
	}
	where = append(where, "t.tenant_id = $1")
	if page.Cursor != "" {
		micros, key, ok := strings.Cut(page.Cursor, ".")
		n, err := strconv.ParseInt(micros, 10, 64)
		if !ok || err != nil || !validTie(key, tieType) {
			return "", nil, holdfast.Errorf(holdfast.EINVALID, "cursor is malformed")
		}
		where = append(where, fmt.Sprintf("(%s, %s) < (%s, %s::%s)", at, tie, arg(time.UnixMicro(n).UTC()), arg(key), tieType))
	}
	if q.Status != "" {
		where = append(where, "t.status = "+arg(q.Status))
	}
	if q.CreatedGTE != nil {
		where = append(where, at+" >= "+arg(*q.CreatedGTE))
	}
	if q.CreatedLT != nil {
		where = append(where, at+" < "+arg(*q.CreatedLT))
	}
	if q.AmountGTE != nil {
		where = append(where, "t.amount >= "+arg(*q.AmountGTE))
	}
	if q.AmountLTE != nil {
		where = append(where, "t.amount <= "+arg(*q.AmountLTE))
	}
	if len(q.Metadata) > 0 {
		m, _ := json.Marshal(q.Metadata) // a map[string]string always marshals
		// The second condition names the GIN index's predicate, so the planner may use it.
		where = append(where, "t.metadata @> "+arg(string(m))+"::jsonb AND t.metadata <> '{}'::jsonb")
	}
	sql := fmt.Sprintf("SELECT %s::text, %s FROM %s WHERE %s ORDER BY %s DESC, %s DESC LIMIT %s",
		tie, transferColumns, from, strings.Join(where, " AND "), at, tie, arg(page.Limit+1))
	return sql, args, nil
}

// validTie reports whether a cursor's tie-breaker is of its type.
func validTie(s, typ string) bool {
	if typ == "uuid" {
		return holdfast.ValidID("cursor", s) == nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n > 0 && strconv.FormatInt(n, 10) == s
}

// UpdateTransferMetadata changes a transfer's metadata by key (see
// patchMetadata).
func (s *TransferService) UpdateTransferMetadata(ctx context.Context, tenantID, id string, patch holdfast.MetadataPatch) (*holdfast.Transfer, error) {
	t, err := patchMetadata(ctx, s.db, "transfer", "SELECT "+transferColumns+" FROM transfers t WHERE t.tenant_id = $1 AND t.id = $2 FOR NO KEY UPDATE",
		"UPDATE transfers SET metadata = $3 WHERE tenant_id = $1 AND id = $2", tenantID, id, patch, scanTransfer,
		func(t *holdfast.Transfer) *map[string]string { return &t.Metadata })
	if t != nil && len(t.Metadata) == 0 {
		t.Metadata = nil // none, as a transfer without metadata is read
	}
	return t, err
}
