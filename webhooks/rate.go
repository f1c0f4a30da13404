package webhooks

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/holdfast/holdfast/internal/lifecycle"
)

// rates holds a token bucket per endpoint, in this replica: an endpoint
// gets at most Rate attempts per second from it, whatever its backlog.
type rates struct {
	limit rate.Limit // 0: none
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

func newRates(perSecond float64, burst int) *rates {
	return &rates{limit: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// wait takes a token of the endpoint's bucket at now (the dispatcher's
// clock), waiting for one; false if ctx ends first.
func (r *rates) wait(ctx context.Context, endpoint string, now time.Time) bool {
	if r.limit == 0 {
		return true
	}
	r.mu.Lock()
	l := r.m[endpoint]
	if l == nil {
		l = rate.NewLimiter(r.limit, r.burst)
		r.m[endpoint] = l
	}
	r.mu.Unlock()
	delay := l.ReserveN(now, 1).DelayFrom(now)
	return delay == 0 && ctx.Err() == nil || lifecycle.Sleep(ctx, delay)
}

// empty returns the endpoints without a token at now, not to be leased,
// and forgets the buckets that are full again (they are as good as new).
func (r *rates) empty(now time.Time) []string {
	if r.limit == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, l := range r.m {
		switch t := l.TokensAt(now); {
		case t < 1:
			out = append(out, id)
		case t >= float64(r.burst):
			delete(r.m, id)
		}
	}
	return out
}
