package webhooks

import (
	"time"

	"github.com/holdfast/holdfast"
)

// Health is an endpoint's record of failures: what its circuit breaker and
// its automatic disabling decide on. It is shared by every replica (a row
// locked while it changes).
type Health struct {
	Enabled             bool
	ConsecutiveFailures int
	FailingSince        *time.Time // the first failure since the last success
	OpenUntil           *time.Time // the breaker is open until then
}

// BreakerConfig configures the circuit breakers.
type BreakerConfig struct {
	// Threshold is the consecutive failures that open the breaker. Default 5.
	Threshold int
	// Cooldown is how long the breaker stays open the first time; each
	// failed probe doubles it, up to MaxCooldown. Default 30s.
	Cooldown time.Duration
	// MaxCooldown caps the open time. Default 10m.
	MaxCooldown time.Duration
	// DisableAfter disables an endpoint that has failed without a success
	// for this long. Default 120h (5 days).
	DisableAfter time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c BreakerConfig) WithDefaults() BreakerConfig {
	if c.Threshold == 0 {
		c.Threshold = 5
	}
	if c.Cooldown == 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.MaxCooldown == 0 {
		c.MaxCooldown = 10 * time.Minute
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = 5 * 24 * time.Hour
	}
	return c
}

// State names the endpoint's state at now: disabled, open (nothing is
// sent), backing off (failing; half-open past its open time), or healthy.
func (h Health) State(now time.Time) string {
	switch {
	case !h.Enabled:
		return holdfast.WebhookDisabled
	case h.OpenUntil != nil && now.Before(*h.OpenUntil):
		return holdfast.WebhookOpen
	case h.ConsecutiveFailures > 0:
		return holdfast.WebhookBackingOff
	}
	return holdfast.WebhookHealthy
}

// HalfOpen reports whether the breaker lets one probe through: it opened,
// and its open time has passed.
func (h Health) HalfOpen(now time.Time, c BreakerConfig) bool {
	return h.ConsecutiveFailures >= c.Threshold && (h.OpenUntil == nil || !now.Before(*h.OpenUntil))
}

// After returns the health after an attempt that ended at now, and whether
// this failure disables the endpoint. A success closes the breaker and
// forgets the failures. A failure counts; at Threshold it opens the
// breaker for Cooldown, and each later failure (a failed probe) opens it
// again for twice as long as the last time, up to MaxCooldown.
func (h Health) After(success bool, now time.Time, c BreakerConfig) (Health, bool) {
	if success {
		return Health{Enabled: h.Enabled}, false
	}
	h.ConsecutiveFailures++
	if h.FailingSince == nil {
		h.FailingSince = &now
	}
	if n := h.ConsecutiveFailures - c.Threshold; n >= 0 {
		cooldown := c.Cooldown
		for i := 0; i < n && cooldown < c.MaxCooldown; i++ {
			cooldown *= 2
		}
		until := now.Add(min(cooldown, c.MaxCooldown))
		h.OpenUntil = &until
	}
	disable := h.Enabled && now.Sub(*h.FailingSince) >= c.DisableAfter
	if disable {
		h.Enabled = false
	}
	return h, disable
}
