package postgres

import (
	"bytes"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

type keyID struct{ tenant, key string }

// batchKeys is what the batch learnt of its requests' Idempotency-Keys.
type batchKeys struct {
	rows   map[keyID]*holdfast.Response // the key's row, if it exists; Status 0 while unanswered
	prints map[keyID][]byte             // the stored fingerprint of each existing key
	first  map[keyID]*transferRequest   // the first request of the batch with each key
}

// queueClaimKeys reads the rows of the requests' Idempotency-Keys. A key
// with no row is this batch's to claim: the first request with it runs, and
// queueStoreResponses inserts the key with its response, beside the effects.
// If a concurrent batch inserts the same key first, that insert violates the
// primary key, this batch rolls back and runs again, and then sees the key.
func queueClaimKeys(b *pgx.Batch, reqs []*transferRequest) *batchKeys {
	k := &batchKeys{rows: map[keyID]*holdfast.Response{}, prints: map[keyID][]byte{}, first: map[keyID]*transferRequest{}}
	var tenants, names []string
	for _, r := range reqs {
		if r.claim == nil {
			continue
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
	b.Queue(`SELECT i.tenant_id, i.key, i.fingerprint, coalesce(i.response_status, 0), coalesce(i.response_type, ''), i.response_body
		FROM idempotency_keys i JOIN unnest($1::uuid[], $2::text[]) AS x(tenant_id, key) USING (tenant_id, key)`,
		UUIDArray(tenants), TextArray(names)).Query(func(rows pgx.Rows) error {
		var t, key string
		var fp []byte
		var resp holdfast.Response
		_, err := pgx.ForEachRow(rows, []any{&t, &key, &fp, &resp.Status, &resp.ContentType, &resp.Body}, func() error {
			id := keyID{t, key}
			stored := resp
			k.rows[id], k.prints[id] = &stored, fp
			return nil
		})
		return err
	})
	return k
}

// resolve decides, for each request with a key, whether it runs (the first
// request of the batch with a key this batch claimed), replays an earlier
// response, or is refused: EIDEMPOTENCYREUSED for another request under the
// same key, EIDEMPOTENCYINUSE while the key's first request is still running.
// A later request of the batch with the key of a running one is settled in
// queueStoreResponses, once that one's outcome is known.
func (k *batchKeys) resolve(reqs []*transferRequest) {
	for _, r := range reqs {
		if r.claim == nil {
			continue
		}
		id := keyID{r.claim.TenantID, r.claim.Key}
		first := k.first[id]
		row := k.rows[id]
		switch {
		case row == nil && first == r:
			r.owner = true
		case row == nil && !bytes.Equal(first.claim.Fingerprint, r.claim.Fingerprint),
			row != nil && !bytes.Equal(k.prints[id], r.claim.Fingerprint):
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYREUSED,
				"this Idempotency-Key was already used with a different request; use a new key for a new request")
		case row == nil:
			// A duplicate within the batch: answered with the owner's outcome.
		case row.Status != 0:
			r.replay = row
		default:
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "a request with this Idempotency-Key is still in progress; retry later")
		}
	}
}

// queueStoreResponses renders the outcome of each request that claimed its
// key in this batch and inserts the key with it, in (tenant, key) order,
// beside the batch's effects: a success or a final client error is kept for
// replay; any other outcome leaves the key unused. A duplicate of a claimed
// key within the batch gets the same response as a replay.
func queueStoreResponses(b *pgx.Batch, reqs []*transferRequest, keys *batchKeys) {
	var owners []*transferRequest
	for _, r := range reqs {
		if !r.owner || r.claim.Render == nil {
			continue
		}
		var result any
		if r.err == nil {
			result = r.out
		}
		if resp, store := r.claim.Render(result, r.err); store {
			r.resp = &resp
			owners = append(owners, r)
		}
	}
	for _, r := range reqs {
		if r.claim == nil || r.owner || r.err != nil || r.replay != nil {
			continue
		}
		if owner := keys.first[keyID{r.claim.TenantID, r.claim.Key}]; owner != nil && owner.resp != nil {
			r.replay = owner.resp
		} else {
			r.err = holdfast.Errorf(holdfast.EIDEMPOTENCYINUSE, "a request with this Idempotency-Key is still in progress; retry later")
		}
	}
	if len(owners) == 0 {
		return
	}
	// Sorted, so two batches inserting overlapping keys wait on each other in
	// one order and never deadlock.
	sort.Slice(owners, func(i, j int) bool {
		a, b := owners[i].claim, owners[j].claim
		return a.TenantID < b.TenantID || a.TenantID == b.TenantID && a.Key < b.Key
	})
	n := len(owners)
	tenants, names, types := make([]string, n), make([]string, n), make([]string, n)
	fps, bodies, statuses := make([][]byte, n), make([][]byte, n), make([]int32, n)
	for i, r := range owners {
		tenants[i], names[i], fps[i] = r.claim.TenantID, r.claim.Key, r.claim.Fingerprint
		statuses[i], types[i], bodies[i] = int32(r.resp.Status), r.resp.ContentType, r.resp.Body
	}
	b.Queue(`INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
		SELECT t, k, f, now(), s, ty, bo FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::text[], $6::bytea[])
			WITH ORDINALITY AS x(t, k, f, s, ty, bo, o) ORDER BY o`,
		UUIDArray(tenants), TextArray(names), ByteaArray(fps), Int4Array(statuses), TextArray(types), ByteaArray(bodies))
}
