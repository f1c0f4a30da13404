// Package deploy holds what operators deploy beside Holdfast: the container
// image (container/), a compose file for a topology across machines
// (compose.yaml, with nats/, postgres/ and prometheus/), systemd units
// (systemd/), Prometheus alert rules (tested by promtool in make test) and
// a Grafana dashboard (grafana/).
//
// Topology is the one description of that topology: the compose file is
// tested against it, and a test that builds the same topology in-process
// can take its sizes from it. Its test also keeps the alerts and the
// dashboard true to the metrics and runbooks in docs/operations.md.
package deploy

import "strconv"

// A Service is one kind of process of the topology, as compose.yaml names
// it: Count services named Name-1 … Name-Count, or one named Name.
type Service struct {
	Name  string
	Count int
}

// Services returns the compose service names of s.
func (s Service) Services() []string {
	if s.Count == 1 {
		return []string{s.Name}
	}
	names := make([]string, s.Count)
	for i := range names {
		names[i] = s.Name + "-" + strconv.Itoa(i+1)
	}
	return names
}

// Topology is what compose.yaml runs: three Holdfast replicas sharing a
// three-node JetStream cluster, a PostgreSQL primary with one streaming
// replica, an S3 server for the blobs and Prometheus scraping every
// replica.
var Topology = struct {
	Holdfast, NATS, PostgresPrimary, PostgresReplica, S3, Prometheus Service
	// NATSReplicas is --nats-replicas: each stream and consumer is kept on
	// this many of the NATS nodes, so that one node may be lost.
	NATSReplicas int
}{
	Holdfast:        Service{"holdfast", 3},
	NATS:            Service{"nats", 3},
	PostgresPrimary: Service{"pg-primary", 1},
	PostgresReplica: Service{"pg-replica", 1},
	S3:              Service{"s3", 1},
	Prometheus:      Service{"prometheus", 1},
	NATSReplicas:    3,
}

// A Setting is one of Holdfast's settings, by its flag and its environment
// variable (cmd/holdfast/config.go); Env is empty for a setting that the
// deployment files give by its flag.
type Setting struct {
	Flag, Env string
	// Why every replica needs the same value.
	Why string
}

// MustAgree lists the settings every replica must be given the same value
// of. Replicas share one database, one event log and one blob store, and
// each start applies its own stream and consumer settings to the shared
// streams; a replica with a value of its own works on another system, or
// undoes what the others set. docs/operations.md and the example env file
// of systemd/ list each of them.
var MustAgree = []Setting{
	{"database-url", "DATABASE_URL", "one system of record: the ledger, the outbox, Idempotency-Keys and every coordination table"},
	{"nats-url", "NATS_URL", "one event log: the database is bound to the streams of one NATS cluster and refuses another"},
	{"nats-replicas", "", "each start creates or updates the streams and consumers with its own replica count"},
	{"blob-url", "", "a receipt worker in one replica opens the original another replica stored"},
	{"admin-token", "HOLDFAST_ADMIN_TOKEN", "the admin API and the console's sessions (signed with it) must work on whichever replica a request reaches"},
	{"webhook-secret-key", "HOLDFAST_WEBHOOK_SECRET_KEY", "an endpoint's secret sealed by one replica is opened by another"},
	{"events-max-bytes", "HOLDFAST_EVENTS_MAX_BYTES", "each start updates the events stream to its own limits"},
	{"events-max-age", "HOLDFAST_EVENTS_MAX_AGE", "each start updates the events stream to its own limits"},
	{"events-duplicate-window", "HOLDFAST_EVENTS_DUPLICATE_WINDOW", "each start updates the events stream to its own limits"},
	{"consumer-ack-wait", "HOLDFAST_CONSUMER_ACK_WAIT", "each start updates the consumer groups to its own settings"},
	{"consumer-max-ack-pending", "HOLDFAST_CONSUMER_MAX_ACK_PENDING", "each start updates the consumer groups to its own settings"},
	{"receipt-cap", "HOLDFAST_RECEIPT_CAP", "the cap is the work queue's MaxAckPending, set by each start"},
	{"receipt-visibility-timeout", "HOLDFAST_RECEIPT_VISIBILITY_TIMEOUT", "the work queue's ack wait, set by each start"},
	{"receipt-max-deliveries", "HOLDFAST_RECEIPT_MAX_DELIVERIES", "the work queue's deliveries before dead letters, set by each start"},
	{"receipt-quota-mib", "HOLDFAST_RECEIPT_QUOTA_MIB", "a tenant's quota is counted across every replica"},
	{"blob-gc-grace", "HOLDFAST_BLOB_GC_GRACE", "every replica sweeps the shared blobs: the shortest grace wins"},
	{"idempotency-retention", "HOLDFAST_IDEMPOTENCY_RETENTION", "every replica reaps the shared keys: the shortest retention wins"},
	{"idempotency-lock-timeout", "HOLDFAST_IDEMPOTENCY_LOCK_TIMEOUT", "a retry on any replica may take over a key after it"},
	{"webhook-timeout", "HOLDFAST_WEBHOOK_TIMEOUT", "a delivery stays leased for twice it, and any replica may take a lapsed lease"},
	{"webhook-per-endpoint", "HOLDFAST_WEBHOOK_PER_ENDPOINT", "one endpoint's attempts are counted across every replica"},
	{"webhook-schedule-scale", "HOLDFAST_WEBHOOK_SCHEDULE_SCALE", "any replica schedules an endpoint's next attempt"},
	{"webhook-disable-after", "HOLDFAST_WEBHOOK_DISABLE_AFTER", "any replica may disable a failing endpoint"},
	{"webhook-rotation-overlap", "HOLDFAST_WEBHOOK_ROTATION_OVERLAP", "any replica signs with the previous secret during the overlap"},
	{"rate-limit", "HOLDFAST_RATE_LIMIT", "a tenant's requests spread over the replicas: with Redis one shared limit, without it each replica's share"},
}

// Pools lists the settings that size the database connections one replica
// opens to the primary, beside the receipt intake's committers (4, fixed).
// Their sum times the replicas must fit in the primary's max_connections;
// compose.yaml gives each explicitly, since some default to a multiple of
// the machine's cores.
var Pools = []Setting{
	{"db-max-conns", "HOLDFAST_DB_MAX_CONNS", "the request pool (one connection holds the relay's LISTEN)"},
	{"committers", "HOLDFAST_COMMITTERS", "the group-commit writer's own connections"},
	{"export-slots", "HOLDFAST_EXPORT_SLOTS", "the export pool, a connection per slot"},
	{"receipt-db-conns", "HOLDFAST_RECEIPT_DB_CONNS", "the receipt workers' pool"},
}
