package load_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// TestRunOverload_CountsOnlyWhatCameBackInTheRun: the responses to requests
// still outstanding when an open-loop run ends come back after it; counted
// in its goodput they would add up to max-in-flight / duration to the rate.
func TestRunOverload_CountsOnlyWhatCameBackInTheRun(t *testing.T) {
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer health.Close()

	const rate, d, quick = 1000, 200 * time.Millisecond, 50
	total := int64(rate * d.Seconds())
	release := make(chan struct{})
	send := func(ctx context.Context, seq int64) (int, error) {
		if seq < quick {
			return http.StatusCreated, nil
		}
		if seq == total-1 { // the last request: let every held one go a whole run after it was sent, after the run's end
			time.AfterFunc(d, func() { close(release) })
		}
		<-release
		return http.StatusCreated, nil
	}
	r := load.RunOverload(t.Context(), "test", rate, d, int(total), time.Minute, health.URL, send)

	if r.OK != total || r.NotSent != 0 || r.Errors != 0 {
		t.Fatalf("OK %d, not sent %d, errors %d; want all %d OK", r.OK, r.NotSent, r.Errors, total)
	}
	if r.Done < 1 || r.Done > quick {
		t.Errorf("Done = %d, want 1..%d: only the quick requests came back before the run's end", r.Done, quick)
	}
	if r.Good != r.Done {
		t.Errorf("Good = %d, want Done (%d): every response came well within the good window", r.Good, r.Done)
	}
	if want := float64(r.Good) / d.Seconds(); r.Goodput != want {
		t.Errorf("Goodput = %v, want Good / d = %v", r.Goodput, want)
	}
}
