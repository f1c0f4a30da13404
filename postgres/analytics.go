package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// AnalyticsGroup is the name of the analytics consumer group (a durable
// consumer of the events stream) unless configured.
const AnalyticsGroup = "analytics"

// AnalyticsService is the analytics consumer group's effect, per-tenant
// per-minute rollups of the event log, and what reads them.
type AnalyticsService struct {
	store *ConsumerStore
	db    *DB
	// Group is the consumer group whose applied sequences guard the effect. Default AnalyticsGroup.
	Group string
}

var _ holdfast.AnalyticsService = (*AnalyticsService)(nil)

// NewAnalyticsService returns an AnalyticsService on db.
func NewAnalyticsService(db *DB) *AnalyticsService {
	return &AnalyticsService{store: NewConsumerStore(db), db: db, Group: AnalyticsGroup}
}

type rollupKey struct {
	tenant   string
	minute   time.Time
	typ      string
	currency string
}

type rollupSum struct{ count, sum int64 }

// ApplyEvents adds the events to the rollups, exactly once: in the same
// transaction as the record of their stream sequences.
func (s *AnalyticsService) ApplyEvents(ctx context.Context, batch []holdfast.EventDelivery) error {
	return s.store.applyOnce(ctx, s.Group, batch, func(ctx context.Context, tx pgx.Tx, fresh []holdfast.EventDelivery) error {
		sums := make(map[rollupKey]*rollupSum)
		for _, d := range fresh {
			amount, currency := eventAmount(d.Event.Data)
			k := rollupKey{d.Event.TenantID, d.Event.OccurredAt.UTC().Truncate(time.Minute), d.Event.Type, currency}
			r := sums[k]
			if r == nil {
				r = &rollupSum{}
				sums[k] = r
			}
			r.count++
			r.sum += amount
		}
		keys := make([]rollupKey, 0, len(sums))
		for k := range sums {
			keys = append(keys, k)
		}
		// In key order, so concurrent batches (other replicas) wait on each other in one order.
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			if a.tenant != b.tenant {
				return a.tenant < b.tenant
			}
			if !a.minute.Equal(b.minute) {
				return a.minute.Before(b.minute)
			}
			if a.typ != b.typ {
				return a.typ < b.typ
			}
			return a.currency < b.currency
		})
		n := len(keys)
		tenants, minutes, types, currencies := make([]string, n), make([]time.Time, n), make([]string, n), make([]string, n)
		counts, amounts := make([]int64, n), make([]int64, n)
		for i, k := range keys {
			tenants[i], minutes[i], types[i], currencies[i] = k.tenant, k.minute, k.typ, k.currency
			counts[i], amounts[i] = sums[k].count, sums[k].sum
		}
		_, err := tx.Exec(ctx, `INSERT INTO analytics_minutes (tenant_id, minute, type, currency, count, amount_sum)
			SELECT t, m, ty, c, n, a FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
				WITH ORDINALITY AS x(t, m, ty, c, n, a, o) ORDER BY o
			ON CONFLICT (tenant_id, minute, type, currency) DO UPDATE
			SET count = analytics_minutes.count + excluded.count, amount_sum = analytics_minutes.amount_sum + excluded.amount_sum`,
			UUIDArray(tenants), TimestamptzArray(minutes), TextArray(types), TextArray(currencies), Int8Array(counts), Int8Array(amounts))
		return err
	})
}

// eventAmount reads the "amount" (minor units, 0 < amount <= MaxAmount) and
// "currency" members of an event's data, where it has them.
func eventAmount(data []byte) (int64, string) {
	if !bytes.Contains(data, []byte(`"amount"`)) {
		return 0, ""
	}
	var v struct {
		Amount   json.Number `json:"amount"`
		Currency string      `json:"currency"`
	}
	if json.Unmarshal(data, &v) != nil {
		return 0, ""
	}
	amount, err := v.Amount.Int64()
	if err != nil || amount <= 0 || amount > holdfast.MaxAmount {
		return 0, ""
	}
	if holdfast.ValidCurrency(v.Currency) != nil {
		return amount, ""
	}
	return amount, v.Currency
}

// MaxRollups is the most rollups one read returns.
const MaxRollups = 10_000

// ListRollups returns the tenant's rollups in [f.From, f.To), by minute,
// type and currency.
func (s *AnalyticsService) ListRollups(ctx context.Context, tenantID string, f holdfast.RollupFilter) ([]holdfast.Rollup, error) {
	if f.Limit == 0 {
		f.Limit = 1000
	}
	if f.Limit < 1 || f.Limit > MaxRollups {
		return nil, holdfast.Errorf(holdfast.EINVALID, "limit must be between 1 and %d", MaxRollups)
	}
	if !f.From.Before(f.To) {
		return nil, holdfast.Errorf(holdfast.EINVALID, "from must be before to")
	}
	if f.Type != "" {
		if err := holdfast.ValidEventType(f.Type); err != nil {
			return nil, err
		}
	}
	list, err := collectRead(ctx, s.db, func(r pgx.CollectableRow) (holdfast.Rollup, error) {
		var x holdfast.Rollup
		err := r.Scan(&x.Minute, &x.Type, &x.Currency, &x.Count, &x.AmountSum)
		x.Minute = x.Minute.UTC()
		return x, err
	}, `SELECT minute, type, currency, count, amount_sum::text FROM analytics_minutes
		WHERE tenant_id = $1 AND minute >= $2 AND minute < $3 AND ($4 = '' OR type = $4)
		ORDER BY minute, type, currency LIMIT $5`, tenantID, f.From, f.To, f.Type, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list rollups: %w", contextError(ctx, err))
	}
	return list, nil
}
