package postgres

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

type keyID struct{ tenant, key string }

// keyRow is an Idempotency-Key's row as a batch reads it.
type keyRow struct {
	fingerprint []byte
	outcome     []byte // the stored outcome (holdfast.Outcome as JSON); nil while its request runs
}

// batchKeys is what the batch learnt of its requests' Idempotency-Keys.
type batchKeys struct {
	rows  map[keyID]keyRow           // the rows of the keys that exist
	first map[keyID]*transferRequest // the first request of the batch with each key
}

// queueClaimKeys reads the rows of the requests' Idempotency-Keys. A key
// with no row is this batch's to claim: the first request with it runs, and
// the batch inserts the key with its outcome, beside the effects (see
// storeOutcomes). If a concurrent batch inserts the same key first, that
// insert violates the primary key, this batch rolls back and runs again,
// and then sees the key. The epoch lock, taken first, puts that concurrent
// insert into the same partition (see epochLock).
func queueClaimKeys(b *pgx.Batch, reqs []*transferRequest) *batchKeys {
	k := &batchKeys{rows: map[keyID]keyRow{}}
	var tenants, names []string
	for _, r := range reqs {
		if r.claim == nil {
			continue
		}
		if k.first == nil {
			k.first = make(map[keyID]*transferRequest, len(reqs))
			tenants, names = make([]string, 0, len(reqs)), make([]string, 0, len(reqs))
		}
		id := keyID{r.claim.TenantID, r.claim.Key}
		if k.first[id] == nil {
			k.first[id] = r
			tenants, names = append(tenants, id.tenant), append(names, id.key)
		}
	}
	if len(names) == 0 {
		return k
	}
	b.Queue(epochSharedSQL, epochLock)
	b.Queue(`SELECT i.tenant_id, i.key, i.fingerprint, i.outcome
		FROM idempotency_keys i JOIN unnest($1::uuid[], $2::text[]) AS x(tenant_id, key) USING (tenant_id, key)`,
		UUIDArray(tenants), TextArray(names)).Query(func(rows pgx.Rows) error {
		var t, key string
		var row keyRow
		_, err := pgx.ForEachRow(rows, []any{&t, &key, &row.fingerprint, &row.outcome}, func() error {
			k.rows[keyID{t, key}] = row
			return nil
		})
		return err
	})
	return k
}

// resolve decides, for each request with a key, whether it runs (the first
// request of the batch with a key this batch claimed), replays an earlier
// outcome, or is refused: EIDEMPOTENCYREUSED for another request under the
// same key, EIDEMPOTENCYINUSE while the key's first request is still running.
// A later request of the batch with the key of a running one is settled in
// storeOutcomes, once that one's outcome is known.
func (k *batchKeys) resolve(reqs []*transferRequest) {
	for _, r := range reqs {
		if r.claim == nil {
			continue
		}
		id := keyID{r.claim.TenantID, r.claim.Key}
		first := k.first[id]
		row, exists := k.rows[id]
		switch {
		case !exists && first == r:
			r.owner = true
		case !exists && !bytes.Equal(first.claim.Fingerprint, r.claim.Fingerprint),
			exists && !bytes.Equal(row.fingerprint, r.claim.Fingerprint):
			r.err = errKeyReused
		case !exists:
			// A duplicate within the batch: answered with the owner's outcome.
		case row.outcome != nil:
			o, err := holdfast.DecodeOutcome(row.outcome)
			if err != nil {
				r.err = fmt.Errorf("stored outcome of an idempotency key: %w", err)
				continue
			}
			r.replay = o
		default:
			r.err = errKeyInUse
		}
	}
}

// storedKeys are the keys a batch claimed, with their encoded outcomes,
// in (tenant, key) order: so two batches inserting overlapping keys wait
// on each other in one order and never deadlock.
type storedKeys struct {
	tenants, names   []string
	prints, outcomes [][]byte
}

// storeOutcomes settles each request that claimed its key in this batch:
// its outcome, a success or a final error, is encoded (r.stored) and its
// key is to be inserted with it; any other outcome leaves the key unused. A duplicate of a claimed key within the batch gets the same
// outcome as a replay. It fails only if a result cannot be encoded.
func storeOutcomes(reqs []*transferRequest, keys *batchKeys) (storedKeys, error) {
	var owners []*transferRequest
	for _, r := range reqs {
		if !r.owner {
			continue
		}
		var result any
		if r.err == nil {
			result = r.out
		}
		o, err := holdfast.EncodeOutcome(r.claim.RequestID, result, r.err)
		if err != nil {
			return storedKeys{}, fmt.Errorf("outcome of a transfer request: %w", err)
		}
		if o == nil {
			continue
		}
		if owners == nil {
			owners = make([]*transferRequest, 0, len(reqs))
		}
		r.stored = o
		owners = append(owners, r)
	}
	for _, r := range reqs {
		if r.claim == nil || r.owner || r.err != nil || r.replay != nil {
			continue
		}
		first := keys.first[keyID{r.claim.TenantID, r.claim.Key}]
		if first == nil || first.stored == nil {
			r.err = errKeyInUse
			continue
		}
		if r.replay, r.err = holdfast.DecodeOutcome(first.stored); r.err != nil {
			r.err = fmt.Errorf("outcome of a transfer request: %w", r.err)
		}
	}
	sort.Slice(owners, func(i, j int) bool {
		a, b := owners[i].claim, owners[j].claim
		return a.TenantID < b.TenantID || a.TenantID == b.TenantID && a.Key < b.Key
	})
	n := len(owners)
	k := storedKeys{tenants: make([]string, n), names: make([]string, n), prints: make([][]byte, n), outcomes: make([][]byte, n)}
	for i, r := range owners {
		k.tenants[i], k.names[i], k.prints[i], k.outcomes[i] = r.claim.TenantID, r.claim.Key, r.claim.Fingerprint, r.stored
	}
	return k, nil
}

// queueStoreOutcomes inserts the keys the batch claimed, with their
// outcomes, into the current epoch (read once for all of them).
func queueStoreOutcomes(b *pgx.Batch, k storedKeys) {
	if len(k.names) == 0 {
		return
	}
	b.Queue(`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, outcome, epoch)
		SELECT t, k, f, now(), oc, e.epoch FROM (SELECT idempotency_epoch() AS epoch) e,
			unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[]) WITH ORDINALITY AS x(t, k, f, oc, o) ORDER BY o`,
		UUIDArray(k.tenants), TextArray(k.names), ByteaArray(k.prints), ByteaArray(k.outcomes))
}
