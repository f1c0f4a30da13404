package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
)

// uploadRefusal is an upload answered with something other than 202.
type uploadRefusal struct {
	status int
	reason string // the problem type's last path segment and the detail's cause, or the status text
}

func (e *uploadRefusal) Error() string { return fmt.Sprintf("upload: %d %s", e.status, e.reason) }

// refusalOf reads a non-202 answer's problem type.
func refusalOf(resp *http.Response) error {
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	reason := strings.ToLower(http.StatusText(resp.StatusCode))
	if json.Unmarshal(b, &p) == nil && p.Type != "" {
		// The detail up to its advice tells apart the causes of one type
		// ("the upload queue is full" from "the service is too busy").
		detail, _, _ := strings.Cut(p.Detail, ";")
		if len(detail) > 30 {
			detail = detail[:30] + "…"
		}
		reason = path.Base(p.Type) + ": " + detail
	}
	return &uploadRefusal{status: resp.StatusCode, reason: reason}
}

// uploadTally counts a spike's uploads by outcome: accepted, refused by
// status and reason, or failed in transport (a timeout, a reset).
type uploadTally struct {
	mu      sync.Mutex
	refused map[string]int64
}

// add counts an upload's error (nil: accepted, counted elsewhere).
func (t *uploadTally) add(err error) {
	if err == nil {
		return
	}
	key := "transport error"
	var r *uploadRefusal
	switch {
	case errors.As(err, &r):
		key = fmt.Sprintf("%d %s", r.status, r.reason)
	case errors.Is(err, context.DeadlineExceeded):
		key = "client timeout"
	}
	t.mu.Lock()
	if t.refused == nil {
		t.refused = map[string]int64{}
	}
	t.refused[key]++
	t.mu.Unlock()
}

// reasons returns the counts, most frequent first.
func (t *uploadTally) reasons() []Refusal {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Refusal, 0, len(t.refused))
	for k, n := range t.refused {
		out = append(out, Refusal{Reason: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Reason < out[j].Reason
	})
	return out
}

// Refusal is how many uploads failed for one reason ("503 overloaded",
// "transport error").
type Refusal struct {
	Reason string
	Count  int64
}
