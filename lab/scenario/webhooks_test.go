package scenario

import (
	"testing"

	"github.com/holdfast/holdfast/lab/bench"
)

// TestScenarioWebhooks: at the tiny scale, Holdfast delivers every healthy
// endpoint's event once, three bad endpoints or not. Not parallel: its
// server and load would crowd the scenarios that count calls in flight.
func TestScenarioWebhooks(t *testing.T) {
	runs := mustRun(t, "webhooks").Data.(map[string]any)["runs"].([]bench.WebhookRun)
	if len(runs) != 5 {
		t.Fatalf("%d runs, want 5", len(runs))
	}
	for _, r := range runs {
		if !r.Holdfast {
			continue
		}
		h := r.Healthy()
		if h.Sent == 0 || int64(h.Delivered) != h.Sent || h.Duplicates != 0 {
			t.Errorf("%s: healthy endpoints got %d of %d events, %d duplicates", r.Name, h.Delivered, h.Sent, h.Duplicates)
		}
	}
}
