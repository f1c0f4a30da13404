package bench

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint classes of the webhooks benchmark: the first three endpoints
// misbehave while the receiver is "bad"; the rest always answer at once.
const (
	classHealthy = "healthy"
	classDead    = "never answers"
	classFlaky   = "500 half the time"
	classSlow    = "answers in 5 s"
)

// webhookClasses lists the classes in the order they are reported.
var webhookClasses = []string{classHealthy, classDead, classFlaky, classSlow}

// webhookReceiver is the benchmark's endpoints: one HTTP server, endpoint
// i at /ep/i. It records, per event id, when the first 2xx was answered
// and how many were, and the event's occurred_at (the server's clock, on
// the same machine).
type webhookReceiver struct {
	slow time.Duration
	bad  atomic.Bool // the three bad endpoints misbehave

	mu   sync.Mutex
	seen map[string]*webhookSeen
}

type webhookSeen struct {
	endpoint int
	occurred time.Time
	first    time.Time
	oks      int
}

func newWebhookReceiver(slow time.Duration) *webhookReceiver {
	return &webhookReceiver{slow: slow, seen: map[string]*webhookSeen{}}
}

// class returns endpoint i's class now.
func (r *webhookReceiver) class(i int) string {
	if !r.bad.Load() || i > 2 {
		return classHealthy
	}
	return webhookClasses[1+i]
}

func (r *webhookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	i, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/ep/"))
	body, _ := io.ReadAll(req.Body)
	var env struct {
		ID         string    `json:"id"`
		OccurredAt time.Time `json:"occurred_at"`
	}
	if err != nil || json.Unmarshal(body, &env) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	switch r.class(i) {
	case classDead:
		<-req.Context().Done()
		return
	case classFlaky:
		if rand.IntN(2) == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	case classSlow:
		select {
		case <-time.After(r.slow):
		case <-req.Context().Done():
			return
		}
	}
	now := time.Now()
	r.mu.Lock()
	s := r.seen[env.ID]
	if s == nil {
		s = &webhookSeen{endpoint: i, occurred: env.OccurredAt, first: now}
		r.seen[env.ID] = s
	}
	s.oks++
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// webhookClassStats is one class of endpoints in one run.
type webhookClassStats struct {
	Class      string
	Sent       int64 // transfers acknowledged (201) for the class's endpoints
	Delivered  int   // of their events, answered 2xx at least once
	Duplicates int   // 2xx answers beyond the first
	P50, P99   time.Duration
}

// stats returns, per class, the delivery of the events that occurred in
// [start, end), given how many transfers each endpoint was sent and each
// endpoint's class during the run.
func (r *webhookReceiver) stats(start, end time.Time, sent []int64, classOf func(int) string) []webhookClassStats {
	byClass := map[string]*webhookClassStats{}
	lat := map[string][]time.Duration{}
	for _, c := range webhookClasses {
		byClass[c] = &webhookClassStats{Class: c}
	}
	for i, n := range sent {
		byClass[classOf(i)].Sent += n
	}
	r.mu.Lock()
	for _, s := range r.seen {
		if s.occurred.Before(start) || !s.occurred.Before(end) {
			continue
		}
		c := byClass[classOf(s.endpoint)]
		c.Delivered++
		c.Duplicates += s.oks - 1
		lat[c.Class] = append(lat[c.Class], s.first.Sub(s.occurred))
	}
	r.mu.Unlock()
	var out []webhookClassStats
	for _, name := range webhookClasses {
		c := byClass[name]
		if c.Sent == 0 {
			continue
		}
		l := lat[name]
		slices.Sort(l)
		c.P50, c.P99 = durationQuantile(l, 0.5), durationQuantile(l, 0.99)
		out = append(out, *c)
	}
	return out
}

// healthyDelivered counts the healthy class's events of [start, end)
// delivered so far.
func (r *webhookReceiver) healthyDelivered(start, end time.Time, classOf func(int) string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seen {
		if !s.occurred.Before(start) && s.occurred.Before(end) && classOf(s.endpoint) == classHealthy {
			n++
		}
	}
	return n
}

func durationQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
