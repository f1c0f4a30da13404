package load

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// TransferSend returns a Send that POSTs one transfer of 1 to 100 USD
// minor units between the accounts pick chooses, with the API key, a
// unique Idempotency-Key and, if timeout is positive, a Request-Timeout
// header of that many milliseconds (the client's patience).
func TransferSend(poster *Poster, key string, run int64, timeout time.Duration, pick func(*rand.Rand) (debit, credit string)) Send {
	header := ""
	if timeout > 0 {
		header = "Request-Timeout: " + strconv.FormatInt(timeout.Milliseconds(), 10) + "\r\n"
	}
	return transferSend(poster, key, run, header, pick)
}

// ExpiredSend returns a Send like TransferSend's whose requests carry
// Request-Timeout: 0, already expired: a protected server drops them
// before any work with a 503, its cheapest refusal.
func ExpiredSend(poster *Poster, key string, run int64, pick func(*rand.Rand) (debit, credit string)) Send {
	return transferSend(poster, key, run, "Request-Timeout: 0\r\n", pick)
}

func transferSend(poster *Poster, key string, run int64, header string, pick func(*rand.Rand) (debit, credit string)) Send {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(run), 1))
	prefix := "Content-Type: application/json\r\nAuthorization: Bearer " + key + "\r\n" + header +
		"Idempotency-Key: overload-" + strconv.FormatInt(run, 10) + "-"
	return func(ctx context.Context, seq int64) (int, error) {
		mu.Lock()
		debit, credit := pick(rng)
		amount := 1 + rng.IntN(100)
		mu.Unlock()
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, debit, credit, amount)
		header := strconv.AppendInt([]byte(prefix), seq, 10)
		return poster.Post(ctx, "/v1/transfers", append(header, "\r\n"...), body)
	}
}

// TransferCall returns a Call that POSTs one transfer of 1 to 100 USD
// minor units to base/v1/transfers with the API key, between the accounts
// pick chooses with the worker's random source (seeded from run and the
// worker), under the Idempotency-Key "bench-<run>-<seq>". A call succeeds
// on 201.
func TransferCall(poster *Poster, key string, run int64, pick func(*rand.Rand) (debit, credit string)) Call {
	rngs := workerRands{run: run}
	auth := benchAuth(key, run)
	return func(ctx context.Context, worker int, seq int64) (bool, error) {
		var debit, credit string
		var amount int
		rngs.with(worker, func(rng *rand.Rand) {
			debit, credit = pick(rng)
			amount = 1 + rng.IntN(100)
		})
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, debit, credit, amount)
		header := strconv.AppendInt([]byte(auth), seq, 10)
		status, err := poster.Post(ctx, "/v1/transfers", append(header, "\r\n"...), body)
		return status == http.StatusCreated, err
	}
}

// TwoPhaseCall returns a Call that makes one two-phase payment, a hold of
// 1 to 100 USD minor units between the accounts pick chooses, then, once
// it is answered, its post (even seq) or void (odd seq): two requests,
// under the Idempotency-Keys "bench-<run>-<seq>-hold" and "-post"/"-void",
// the hold with a client-chosen id that names it in the second. A call
// succeeds when both are answered 201.
func TwoPhaseCall(poster *Poster, key string, run int64, pick func(*rand.Rand) (debit, credit string)) Call {
	rngs := workerRands{run: run}
	auth := benchAuth(key, run)
	return func(ctx context.Context, worker int, seq int64) (bool, error) {
		var debit, credit string
		var amount int
		var id uuid.UUID
		rngs.with(worker, func(rng *rand.Rand) {
			debit, credit = pick(rng)
			amount = 1 + rng.IntN(100)
			binary.BigEndian.PutUint64(id[:8], rng.Uint64())
			binary.BigEndian.PutUint64(id[8:], rng.Uint64())
		})
		id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // a version 4 UUID
		hold := fmt.Appendf(nil, `{"id":%q,"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD","pending":true}`,
			id.String(), debit, credit, amount)
		header := strconv.AppendInt([]byte(auth), seq, 10)
		status, err := poster.Post(ctx, "/v1/transfers", append(slices.Clip(header), "-hold\r\n"...), hold)
		if err != nil || status != http.StatusCreated {
			return false, err
		}
		action := "post"
		if seq%2 == 1 {
			action = "void"
		}
		status, err = poster.Post(ctx, "/v1/transfers/"+id.String()+"/"+action, append(header, "-"+action+"\r\n"...), nil)
		return status == http.StatusCreated, err
	}
}

// benchAuth is the header lines of a benchmark's requests up to the
// Idempotency-Key's sequence number: "bench-<run>-".
func benchAuth(key string, run int64) string {
	return "Content-Type: application/json\r\nAuthorization: Bearer " + key + "\r\nIdempotency-Key: bench-" + strconv.FormatInt(run, 10) + "-"
}

// workerRands gives each worker of a run a random source of its own,
// seeded from the run and the worker, so a run's choices repeat.
type workerRands struct {
	run int64
	mu  sync.Mutex
	m   map[int]*rand.Rand
}

// with calls f with the worker's source, one call at a time.
func (w *workerRands) with(worker int, f func(*rand.Rand)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[int]*rand.Rand{}
	}
	rng := w.m[worker]
	if rng == nil {
		rng = rand.New(rand.NewPCG(uint64(w.run), uint64(worker)))
		w.m[worker] = rng
	}
	f(rng)
}
