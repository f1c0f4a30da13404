package naive_test

import (
	"errors"
	"testing"

	"github.com/holdfast/holdfast/lab/naive"
)

// TestMemoryQueue: the queue holds events in order until they take more
// than its limit; then it is killed with every event it held.
func TestMemoryQueue(t *testing.T) {
	q := &naive.MemoryQueue{Limit: 10}
	for _, e := range []string{"abcd", "efgh"} {
		if err := q.Push([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	if got := q.Pop(1); len(got) != 1 || string(got[0]) != "abcd" {
		t.Fatalf("Pop(1) = %q", got)
	}
	if n, b := q.Len(); n != 1 || b != 4 {
		t.Fatalf("Len() = %d, %d; want 1, 4", n, b)
	}
	if err := q.Push([]byte("ijkl")); err != nil {
		t.Fatal(err)
	}
	if err := q.Push([]byte("mnop")); !errors.Is(err, naive.ErrKilled) {
		t.Fatalf("past the limit: %v, want ErrKilled", err)
	}
	if killed, lost := q.Killed(); !killed || lost != 3 {
		t.Fatalf("Killed() = %v, %d; want true, 3", killed, lost)
	}
	if err := q.Push([]byte("q")); !errors.Is(err, naive.ErrKilled) || len(q.Pop(10)) != 0 {
		t.Fatalf("a killed queue took an event or gave one")
	}
}
