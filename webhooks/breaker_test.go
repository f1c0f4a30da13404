package webhooks_test

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhooks"
)

func TestHealth_BreakerTransitions(t *testing.T) {
	c := webhooks.BreakerConfig{Threshold: 3, Cooldown: 10 * time.Second, MaxCooldown: 35 * time.Second, DisableAfter: time.Hour}.WithDefaults()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := webhooks.Health{Enabled: true}
	if s := h.State(now); s != holdfast.WebhookHealthy {
		t.Fatalf("new endpoint %s", s)
	}
	for i := 1; i < c.Threshold; i++ {
		h, _ = h.After(false, now, c)
		if s := h.State(now); s != holdfast.WebhookBackingOff || h.HalfOpen(now, c) {
			t.Fatalf("after %d failures: %s, half-open %v", i, s, h.HalfOpen(now, c))
		}
	}
	h, _ = h.After(false, now, c) // the threshold: open
	if s := h.State(now); s != holdfast.WebhookOpen {
		t.Fatalf("at the threshold: %s, want open", s)
	}
	if h.HalfOpen(now.Add(9*time.Second), c) || !h.HalfOpen(now.Add(10*time.Second), c) {
		t.Fatal("half-opens other than after its cooldown")
	}
	// Failed probes open it for twice as long each time, up to the cap.
	for _, want := range []time.Duration{20 * time.Second, 35 * time.Second, 35 * time.Second} {
		now = now.Add(time.Minute)
		h, _ = h.After(false, now, c)
		if got := h.OpenUntil.Sub(now); got != want {
			t.Fatalf("open for %v after a failed probe, want %v", got, want)
		}
	}
	// A successful probe closes it.
	h, _ = h.After(true, now, c)
	if s := h.State(now); s != holdfast.WebhookHealthy || h.ConsecutiveFailures != 0 || h.FailingSince != nil {
		t.Fatalf("after a success: %s %+v", s, h)
	}
}

func TestHealth_DisabledAfterFailingLongEnough(t *testing.T) {
	c := webhooks.BreakerConfig{DisableAfter: 5 * 24 * time.Hour}.WithDefaults()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := webhooks.Health{Enabled: true}
	h, off := h.After(false, start, c)
	if off {
		t.Fatal("disabled at its first failure")
	}
	h, off = h.After(false, start.Add(5*24*time.Hour-time.Second), c)
	if off || !h.Enabled {
		t.Fatal("disabled before DisableAfter")
	}
	h, off = h.After(false, start.Add(5*24*time.Hour), c)
	if !off || h.Enabled || h.State(start) != holdfast.WebhookDisabled {
		t.Fatalf("not disabled after failing for DisableAfter: %+v", h)
	}
	if _, again := h.After(false, start.Add(6*24*time.Hour), c); again {
		t.Fatal("disabled twice")
	}
}

func TestSchedule_NextWithJitter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var total time.Duration
	for _, d := range webhooks.DefaultSchedule {
		total += d
	}
	if total < 27*time.Hour || total > 28*time.Hour {
		t.Fatalf("the schedule spans %v, want about 27.6h", total)
	}
	for attempt := 1; attempt < len(webhooks.DefaultSchedule); attempt++ {
		d := webhooks.DefaultSchedule[attempt]
		lo, _ := webhooks.DefaultSchedule.Next(attempt, now, func() float64 { return 0 })
		hi, _ := webhooks.DefaultSchedule.Next(attempt, now, func() float64 { return 0.999999 })
		if lo.Sub(now) != d-d/10 || hi.Sub(now) <= d || hi.Sub(now) > d+d/10 {
			t.Errorf("attempt %d: jitter bounds %v..%v around %v", attempt, lo.Sub(now), hi.Sub(now), d)
		}
	}
	if _, ok := webhooks.DefaultSchedule.Next(len(webhooks.DefaultSchedule), now, nil); ok {
		t.Fatal("a try after the last")
	}
	if s := webhooks.DefaultSchedule.Scaled(0.001); s[7] != 36*time.Second {
		t.Fatalf("scaled: %v", s)
	}
}
