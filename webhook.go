package holdfast

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"time"
)

// EventWebhookEndpointDisabled is the event a tenant receives when one of
// its endpoints was disabled for failing too long.
const EventWebhookEndpointDisabled = "webhook_endpoint.disabled"

// Webhook limits.
const (
	// MaxWebhookEndpoints is the most endpoints a tenant may have.
	MaxWebhookEndpoints = 100
	// MaxWebhookEventTypes is the most event types one endpoint may list.
	MaxWebhookEventTypes = 50
	// MaxWebhookURL is the longest endpoint URL, in bytes.
	MaxWebhookURL = 2048
	// MaxWebhookDescription is the longest description, in bytes.
	MaxWebhookDescription = 512
)

// WebhookSecretPrefix begins every signing secret (Standard Webhooks).
const WebhookSecretPrefix = "whsec_"

// WebhookEndpoint is where a tenant receives its events. Secret is set only
// in the response that created it or rotated it: it is stored sealed.
type WebhookEndpoint struct {
	ID             string    `json:"id"`
	TenantID       string    `json:"tenant_id"`
	URL            string    `json:"url"`
	EventTypes     []string  `json:"event_types"`
	Description    string    `json:"description"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	State          string    `json:"state"`
	Secret         string    `json:"secret,omitempty"`
	SecretRedacted bool      `json:"secret_redacted,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Redacted returns a copy without the secret, marked as such: what a replay
// of its creation shows.
func (e *WebhookEndpoint) Redacted() *WebhookEndpoint {
	c := *e
	c.Secret, c.SecretRedacted = "", true
	return &c
}

// Endpoint states, from its failures and its circuit breaker.
const (
	WebhookHealthy    = "healthy"     // its last attempt succeeded (or none was made)
	WebhookBackingOff = "backing_off" // failing, retried on the schedule
	WebhookOpen       = "open"        // the breaker is open: nothing is sent until it half-opens
	WebhookDisabled   = "disabled"    // sent nothing until enabled again
)

// WebhookEndpointHealth is an endpoint as an operator sees it: how long it
// has been failing, and how many attempts in a row.
type WebhookEndpointHealth struct {
	Endpoint            WebhookEndpoint
	ConsecutiveFailures int
	FailingSince        *time.Time // nil: not failing (disabled by its tenant)
}

// WebhookEndpointCreate is the body of POST /v1/webhook-endpoints.
type WebhookEndpointCreate struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types,omitempty"`
	Description string   `json:"description,omitempty"`
	Enabled     *bool    `json:"enabled,omitempty"` // default true
}

// Validate returns EINVALID for a malformed endpoint.
func (c WebhookEndpointCreate) Validate() error {
	if err := ValidWebhookURL(c.URL); err != nil {
		return err
	}
	if err := validEventTypes(c.EventTypes); err != nil {
		return err
	}
	return validText("description", c.Description, 0, MaxWebhookDescription)
}

// WebhookEndpointUpdate is the body of PATCH /v1/webhook-endpoints/{id}:
// the members given are changed. Enabling a disabled endpoint clears its
// failures and closes its breaker.
type WebhookEndpointUpdate struct {
	URL         *string   `json:"url,omitempty"`
	EventTypes  *[]string `json:"event_types,omitempty"`
	Description *string   `json:"description,omitempty"`
	Enabled     *bool     `json:"enabled,omitempty"`
}

// Validate returns EINVALID for a malformed update.
func (u WebhookEndpointUpdate) Validate() error {
	if u.URL != nil {
		if err := ValidWebhookURL(*u.URL); err != nil {
			return err
		}
	}
	if u.EventTypes != nil {
		if err := validEventTypes(*u.EventTypes); err != nil {
			return err
		}
	}
	if u.Description != nil {
		return validText("description", *u.Description, 0, MaxWebhookDescription)
	}
	return nil
}

// ValidWebhookURL returns EINVALID unless s is an absolute http or https
// URL with a host, no user information and no fragment. Where it may point
// (not at private addresses) is checked when connecting, after DNS.
func ValidWebhookURL(s string) error {
	if len(s) > MaxWebhookURL {
		return Errorf(EINVALID, "url must be at most %d bytes", MaxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" {
		return Errorf(EINVALID, "url must be an absolute http or https URL")
	}
	if u.User != nil || u.Fragment != "" || strings.ContainsAny(s, " \t\r\n") {
		return Errorf(EINVALID, "url may not hold credentials, a fragment or spaces")
	}
	return nil
}

func validEventTypes(types []string) error {
	if len(types) > MaxWebhookEventTypes {
		return Errorf(EINVALID, "event_types may list at most %d types", MaxWebhookEventTypes)
	}
	for _, t := range types {
		if err := ValidEventType(t); err != nil {
			return err
		}
	}
	return nil
}

// NewWebhookSecret returns a random signing secret: WebhookSecretPrefix
// and 32 random bytes in base64 (the spec asks 24 to 64).
func NewWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// WebhookAttempt is one attempt to deliver a message to an endpoint.
type WebhookAttempt struct {
	ID            string     `json:"id"`
	MessageID     string     `json:"message_id"`
	Attempt       int        `json:"attempt"`
	StartedAt     time.Time  `json:"started_at"`
	LatencyMS     float64    `json:"latency_ms"`
	StatusCode    int        `json:"status_code,omitempty"`
	Result        string     `json:"result"`
	Error         string     `json:"error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// Attempt results.
const (
	WebhookSucceeded = "succeeded" // a 2xx within the timeout
	WebhookFailed    = "failed"    // any other response, or a connection that failed
	WebhookTimeout   = "timeout"   // no answer within the timeout
	WebhookRefused   = "refused"   // the URL resolves to an address endpoints may not use
)

// WebhookRecovery is the body of POST /v1/webhook-endpoints/{id}/recover.
type WebhookRecovery struct {
	Since time.Time `json:"since"`
}

// WebhookRecovered answers a recovery: how many failed messages are
// scheduled again.
type WebhookRecovered struct {
	Recovered int64 `json:"recovered"`
}

// WebhookReplayed answers a replay: the message is due again, with its id.
type WebhookReplayed struct {
	MessageID  string `json:"message_id"`
	EndpointID string `json:"endpoint_id"`
}

// WebhookService manages a tenant's endpoints and their deliveries. Every
// call is scoped to the tenant: another tenant's endpoint is ENOTFOUND.
type WebhookService interface {
	// CreateWebhookEndpoint creates an endpoint with a new secret (Secret
	// set). With a claim, the endpoint, redacted, is stored as the claim's
	// Outcome with it. EINVALID for bad input, ECONFLICT when the tenant has
	// MaxWebhookEndpoints already, EIDEMPOTENCYINUSE if the claim was taken over.
	CreateWebhookEndpoint(ctx context.Context, tenantID string, in WebhookEndpointCreate, claim *IdempotencyClaim) (*WebhookEndpoint, error)
	// ListWebhookEndpoints lists one page of the tenant's endpoints, newest
	// first, and the next page's cursor ("" on the last).
	ListWebhookEndpoints(ctx context.Context, tenantID string, page Page) ([]*WebhookEndpoint, string, error)
	// WebhookEndpoint returns one endpoint; ENOTFOUND.
	WebhookEndpoint(ctx context.Context, tenantID, id string) (*WebhookEndpoint, error)
	// UpdateWebhookEndpoint changes the members given; ENOTFOUND, EINVALID.
	UpdateWebhookEndpoint(ctx context.Context, tenantID, id string, in WebhookEndpointUpdate) (*WebhookEndpoint, error)
	// DeleteWebhookEndpoint deletes an endpoint and its deliveries; ENOTFOUND.
	DeleteWebhookEndpoint(ctx context.Context, tenantID, id string) error
	// RotateWebhookSecret gives the endpoint a new secret (returned, Secret
	// set); the previous one keeps signing beside it for the overlap. With
	// a claim, the endpoint, redacted, is stored as its Outcome. ENOTFOUND.
	RotateWebhookSecret(ctx context.Context, tenantID, id string, claim *IdempotencyClaim) (*WebhookEndpoint, error)
	// ListWebhookAttempts lists one page of an endpoint's attempts, newest
	// first. ENOTFOUND for an endpoint of another tenant.
	ListWebhookAttempts(ctx context.Context, tenantID, endpointID string, page Page) ([]*WebhookAttempt, string, error)
	// ReplayWebhookMessage makes a message due again at the endpoint, at
	// once, with its retry schedule from the start and the same id.
	// ENOTFOUND for an unknown endpoint or a message it was never sent.
	ReplayWebhookMessage(ctx context.Context, tenantID, endpointID, messageID string) (*WebhookReplayed, error)
	// RecoverWebhookMessages makes every failed message since the time due
	// again at the endpoint, with the same ids. ENOTFOUND.
	RecoverWebhookMessages(ctx context.Context, tenantID, endpointID string, since time.Time) (*WebhookRecovered, error)
}
