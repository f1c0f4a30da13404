// Package webhooks delivers the event log to tenants' endpoints in the
// Standard Webhooks format: the webhooks consumer group writes each event
// as a delivery per subscribed endpoint (in PostgreSQL, exactly once), and
// a Dispatcher in every replica leases due deliveries, signs and posts
// them, and records each attempt.
//
// One endpoint cannot hold up another: deliveries wait per endpoint in the
// database rather than in the consumer group; each endpoint has a cap on
// attempts in flight (across replicas) and a circuit breaker; a replica has
// a global cap on outbound requests; connections to private, loopback,
// link-local and metadata addresses are refused after DNS, at connect time.
// Failed attempts are retried on a schedule of about 27 hours (Schedule);
// an endpoint failing for DisableAfter is disabled.
//
// It declares the store it needs (Store) and imports no adapter;
// postgres.WebhookStore satisfies it and app wires it.
package webhooks
