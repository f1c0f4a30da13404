package naive

import (
	"errors"
	"sync"
)

// ErrKilled is what MemoryQueue.Push returns once the queue has outgrown
// its memory limit: the process holding it would have been killed.
var ErrKilled = errors.New("naive: out of memory: the process holding the queue was killed")

// MemoryQueue is the naive way to absorb a burst: events appended to a
// slice in the process's memory, drained by a consumer, with no bound but
// the memory itself. Limit stands in for the container's memory limit: when
// the events queued take more than Limit bytes, the process is killed (the
// OOM killer) and every event in the queue is lost. The lab's stand-in for
// a real kill keeps the test process alive; nothing else is simulated.
type MemoryQueue struct {
	Limit int64 // bytes of queued events at which the process dies

	mu     sync.Mutex
	items  [][]byte
	bytes  int64
	killed bool
	lost   int
}

// Push appends an event. It returns ErrKilled once the queue has outgrown
// Limit, and from then on.
func (q *MemoryQueue) Push(event []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.killed {
		return ErrKilled
	}
	q.items = append(q.items, event)
	q.bytes += int64(len(event))
	if q.bytes > q.Limit {
		q.killed, q.lost = true, len(q.items)
		q.items, q.bytes = nil, 0
		return ErrKilled
	}
	return nil
}

// Pop removes and returns up to n events from the front; none once killed.
func (q *MemoryQueue) Pop(n int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.items))
	out := q.items[:n:n]
	q.items = q.items[n:]
	for _, e := range out {
		q.bytes -= int64(len(e))
	}
	return out
}

// Len returns the events queued and their bytes.
func (q *MemoryQueue) Len() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.bytes
}

// Killed returns whether the process died, and how many events died with it.
func (q *MemoryQueue) Killed() (bool, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.killed, q.lost
}
