package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/lab/load"
)

// soakEventType is the type of the soak's client events, counted in the
// analytics rollups and the audit trail at the end.
const soakEventType = "soak.viewed"

// soakTraffic sends the soak's mix to one tenant and remembers what the
// server acknowledged, for the final checks.
type soakTraffic struct {
	base, key string
	run       int64
	accounts  []string
	retry     float64 // share of keyed requests sent a second time, after their answer
	poster    *load.Poster
	client    *http.Client

	mu    sync.Mutex
	acked map[uuid.UUID]struct{} // client events answered 202
	// replayAnswers counts the statuses of repeats answered otherwise than the first.
	replayAnswers map[int]int64
	// retries counts keyed requests sent again; replayFailed, those whose
	// repeat was not answered as the first was.
	retries, replayFailed atomic.Int64
	repeats               sync.WaitGroup // the repeats on their way
	receipts              atomic.Int64   // uploads answered 202
}

func newSoakTraffic(base, key string, run int64, accounts []string, retry float64) (*soakTraffic, error) {
	p, err := load.NewPoster(base, 256, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &soakTraffic{base: base, key: key, run: run, accounts: accounts, retry: retry, poster: p,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		acked:  map[uuid.UUID]struct{}{}, replayAnswers: map[int]int64{}}, nil
}

func (t *soakTraffic) close() { t.poster.Close(); t.client.CloseIdleConnections() }

// header returns a request's header lines with the Idempotency-Key soak-<run>-<kind><seq>.
func (t *soakTraffic) header(kind string, seq int64) []byte {
	return fmt.Appendf(nil, "Content-Type: application/json\r\nAuthorization: Bearer %s\r\nIdempotency-Key: soak-%d-%s%d\r\n", t.key, t.run, kind, seq)
}

// rng returns a random source of call seq of a kind, so a run's choices repeat.
func (t *soakTraffic) rng(kind, seq int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(t.run)<<8|uint64(kind), uint64(seq)))
}

// keyed posts body under header and, for a share t.retry of the calls,
// posts it again once answered: a client that lost the first answer. The
// repeat must be answered with the same status; wait for the repeats
// with t.repeats.
func (t *soakTraffic) keyed(ctx context.Context, rng *rand.Rand, path string, header, body []byte, want int) bool {
	status, err := t.poster.Post(ctx, path, header, body)
	if err != nil || status != want {
		return false
	}
	if rng.Float64() < t.retry {
		// Aside, so that the call's latency is the first answer's.
		t.retries.Add(1)
		t.repeats.Go(func() {
			if again, err := t.poster.Post(ctx, path, header, body); err != nil || again != status {
				t.replayFailed.Add(1)
				t.mu.Lock()
				t.replayAnswers[again]++ // 0: no answer
				t.mu.Unlock()
			}
		})
	}
	return true
}

// transfer posts one keyed transfer between two of the accounts.
func (t *soakTraffic) transfer(ctx context.Context, seq int64) bool {
	rng := t.rng(1, seq)
	d, c := rng.IntN(len(t.accounts)), rng.IntN(len(t.accounts)-1)
	if c >= d {
		c++
	}
	body := fmt.Appendf(nil, `{"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD"}`,
		t.accounts[d], t.accounts[c], 1+rng.IntN(100))
	return t.keyed(ctx, rng, "/v1/transfers", t.header("t", seq), body, http.StatusCreated)
}

// event posts one keyed client event with an id of its own, remembered
// once acknowledged.
func (t *soakTraffic) event(ctx context.Context, seq int64) bool {
	rng := t.rng(2, seq)
	var id uuid.UUID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80
	body := fmt.Appendf(nil, `{"events":[{"id":%q,"type":%q,"properties":{"amount":%d,"currency":"USD"}}]}`,
		id.String(), soakEventType, 1+rng.IntN(100))
	if !t.keyed(ctx, rng, "/v1/events", t.header("e", seq), body, http.StatusAccepted) {
		return false
	}
	t.mu.Lock()
	t.acked[id] = struct{}{}
	t.mu.Unlock()
	return true
}

// ackedEvents returns the ids of the client events answered 202.
func (t *soakTraffic) ackedEvents() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, 0, len(t.acked))
	for id := range t.acked {
		ids = append(ids, id.String())
	}
	return ids
}

// replayAnswersText describes the statuses of the repeats answered
// otherwise than the first, e.g. "409 ×3, 503 ×1".
func (t *soakTraffic) replayAnswersText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	statuses := slices.Sorted(maps.Keys(t.replayAnswers))
	parts := make([]string, len(statuses))
	for i, st := range statuses {
		parts[i] = fmt.Sprintf("%d ×%d", st, t.replayAnswers[st])
	}
	return strings.Join(parts, ", ")
}

// receipt makes a transfer and uploads a small PNG, different every time,
// as its receipt.
func (t *soakTraffic) receipt(ctx context.Context, seq int64) bool {
	rng := t.rng(3, seq)
	id := uuid.Must(uuid.NewV7()).String()
	body := fmt.Appendf(nil, `{"id":%q,"debit_account_id":%q,"credit_account_id":%q,"amount":%d,"currency":"USD","description":"receipt"}`,
		id, t.accounts[0], t.accounts[1+rng.IntN(len(t.accounts)-1)], 1+rng.IntN(100))
	if status, err := t.poster.Post(ctx, "/v1/transfers", t.header("r", seq), body); err != nil || status != http.StatusCreated {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, "PUT", t.base+"/v1/transfers/"+id+"/receipt", bytes.NewReader(soakPNG(rng)))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Content-Type", "image/png")
	resp, err := t.client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return false
	}
	t.receipts.Add(1)
	return true
}

// soakPNG draws a small image of random blocks.
func soakPNG(rng *rand.Rand) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := 0; y < 48; y += 8 {
		for x := 0; x < 64; x += 8 {
			c := color.RGBA{uint8(rng.Uint32()), uint8(rng.Uint32()), uint8(rng.Uint32()), 255}
			for dy := range 8 {
				for dx := range 8 {
					img.SetRGBA(x+dx, y+dy, c)
				}
			}
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// export streams the last two minutes of one account's entries as CSV.
func (t *soakTraffic) export(ctx context.Context, seq int64) bool {
	rng := t.rng(4, seq)
	from := time.Now().UTC().Add(-2 * time.Minute).Format(time.RFC3339)
	req, err := http.NewRequestWithContext(ctx, "GET", t.base+"/v1/accounts/"+t.accounts[rng.IntN(len(t.accounts))]+
		"/transactions.csv?from="+from, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	resp, err := t.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK
}

// soakKinds names the traffic kinds in the order they are reported.
var soakKinds = []string{"transfers", "events", "receipts", "exports"}

// call returns the call of a kind.
func (t *soakTraffic) call(kind string) func(context.Context, int64) bool {
	switch kind {
	case "transfers":
		return t.transfer
	case "events":
		return t.event
	case "receipts":
		return t.receipt
	case "exports":
		return t.export
	}
	panic("soak: unknown traffic kind " + strconv.Quote(kind))
}
