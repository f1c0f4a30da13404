package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
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
	var mu sync.Mutex
	rngs := map[int]*rand.Rand{}
	auth := "Content-Type: application/json\r\nAuthorization: Bearer " + key + "\r\nIdempotency-Key: bench-" + strconv.FormatInt(run, 10) + "-"
	return func(ctx context.Context, worker int, seq int64) (bool, error) {
		mu.Lock()
		rng := rngs[worker]
		if rng == nil {
			rng = rand.New(rand.NewPCG(uint64(run), uint64(worker)))
			rngs[worker] = rng
		}
		debit, credit := pick(rng)
		amount := 1 + rng.IntN(100)
		mu.Unlock()
		body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`, debit, credit, amount)
		header := strconv.AppendInt([]byte(auth), seq, 10)
		status, err := poster.Post(ctx, "/v1/transfers", append(header, "\r\n"...), body)
		return status == http.StatusCreated, err
	}
}
