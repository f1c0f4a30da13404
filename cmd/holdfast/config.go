package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/app"
)

// A setting is one row of the configuration table of serve and dev: a flag,
// the environment variable that sets it when the flag is not given, the
// Config field it fills (whose value before parsing is the default) and its
// help text.
type setting struct {
	flag, env string
	// value points to the Config field: *string, *bool, *int, *int64,
	// *float64, *time.Duration, or a flag.Value that checks its input.
	value any
	help  string
}

// settings is the configuration table of serve and dev, the one place each
// flag is written. A new setting is an app.Config field and a row here.
func settings(c *app.Config) []setting {
	return []setting{
		{"addr", "HOLDFAST_ADDR", (*listenAddr)(&c.Addr), "`host:port` the API listens on; a bare port means 127.0.0.1 only"},
		{"metrics-addr", "HOLDFAST_METRICS_ADDR", (*listenAddr)(&c.MetricsAddr), "`host:port` to serve /metrics on, a listener of its own (the API address then answers it 404); a bare port means 127.0.0.1 only; empty keeps /metrics on --addr"},
		{"data-dir", "HOLDFAST_DATA_DIR", &c.DataDir, "data directory: embedded NATS files, the dev PostgreSQL"},
		{"database-url", "DATABASE_URL", &c.DatabaseURL, "PostgreSQL URL; required by serve, optional for dev"},
		{"nats-url", "NATS_URL", &c.NATSURL, "external NATS URL, or a cluster's URLs comma-separated; empty runs an embedded server in the data directory, which only one replica on a database may do: replicas share one NATS through this flag"},
		{"nats-replicas", "HOLDFAST_NATS_REPLICAS", &c.NATSReplicas, "copies of every stream and durable consumer in a NATS cluster (existing ones are scaled to it); 0 means 3 when --nats-url's server is in a cluster, else 1; every replica must be given the same"},
		{"database-read-url", "DATABASE_READ_URL", &c.DatabaseReadURL, "URL of a PostgreSQL streaming replica of --database-url: exports and history lists read from it while it is reachable and within --replica-max-lag, else from the primary; empty reads everything from the primary"},
		{"db-read-max-conns", "HOLDFAST_DB_READ_MAX_CONNS", &c.DBReadMaxConns, "read replica's pool size; 0 means the primary pool's size"},
		{"replica-max-lag", "HOLDFAST_REPLICA_MAX_LAG", &c.ReplicaMaxLag, "reads fall back to the primary while the read replica is further behind than this"},
		{"nats-listen", "HOLDFAST_NATS_LISTEN", (*listenAddr)(&c.NATSListen), "`host:port` of the embedded NATS server's client port, for the nats CLI (no authentication: keep it on loopback); a bare port means 127.0.0.1 only, port 0 a free one; empty: no port (dev: 127.0.0.1:4223, or a free port if taken)"},
		{"admin-token", "HOLDFAST_ADMIN_TOKEN", &c.AdminToken, "bearer token for /v1/admin, at least 32 characters; empty disables the admin API (dev generates one)"},
		{"db-max-conns", "HOLDFAST_DB_MAX_CONNS", &c.DBMaxConns, "database pool size; 0 means 4 × cores, at least 8"},
		{"request-timeout", "HOLDFAST_REQUEST_TIMEOUT", &c.RequestTimeout, "deadline of each request"},
		{"body-limit", "HOLDFAST_BODY_LIMIT", &c.BodyLimit, "largest request body in bytes"},
		{"idempotency-retention", "HOLDFAST_IDEMPOTENCY_RETENTION", &c.IdempotencyRetention, "how long Idempotency-Keys are kept at least (their partition is dropped up to a quarter of this later); clients are promised 24h, so less is logged as a warning, and less than 10s refused"},
		{"idempotency-lock-timeout", "HOLDFAST_IDEMPOTENCY_LOCK_TIMEOUT", &c.IdempotencyLockTimeout, "after this a retry may take over a key whose first request never finished"},
		{"group-commit", "HOLDFAST_GROUP_COMMIT", &c.GroupCommit, "apply concurrent transfers in shared transactions"},
		{"hold-sweep-interval", "HOLDFAST_HOLD_SWEEP_INTERVAL", &c.HoldSweepInterval, "pause between sweeps that expire holds past their timeout (every replica sweeps; a due hold can no longer be posted, swept or not)"},
		{"max-batch", "HOLDFAST_MAX_BATCH", &c.MaxBatch, "most transfer requests per group-commit transaction"},
		{"committers", "HOLDFAST_COMMITTERS", &c.Committers, "group-commit transactions in flight at once, each on its own connection"},
		{"shutdown-timeout", "HOLDFAST_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout, "how long SIGTERM waits for in-flight requests"},
		{"log-level", "HOLDFAST_LOG_LEVEL", (*logLevel)(&c.LogLevel), "`level` of the log: debug, info, warn or error"},
		{"migrate", "HOLDFAST_MIGRATE", &c.Migrate, "apply database migrations at start"},
		{"export-slots", "HOLDFAST_EXPORT_SLOTS", &c.ExportSlots, "most concurrent exports, each with its own database connection; 0 means 4 × cores"},
		{"export-slots-per-tenant", "HOLDFAST_EXPORT_SLOTS_PER_TENANT", &c.ExportSlotsPerTenant, "most concurrent exports of one tenant; 0 means 2"},
		// Overload protection (overload.go).
		{"admission", "HOLDFAST_ADMISSION", &c.Admission, "adaptive admission control per route class: shed excess requests with 503 + Retry-After"},
		{"admission-min-limit", "HOLDFAST_ADMISSION_MIN_LIMIT", &c.AdmissionMinLimit, "lowest concurrency limit of a route class"},
		{"admission-write-min-limit", "HOLDFAST_ADMISSION_WRITE_MIN_LIMIT", &c.AdmissionWriteMin, "lowest concurrency limit of writes: group commit needs concurrency to fill its batches, and --ledger-max-wait sheds transfers by the queue's delay instead"},
		{"ledger-max-wait", "HOLDFAST_LEDGER_MAX_WAIT", &c.LedgerMaxWait, "with --admission: a transfer is refused at once (503) while more wait for group commit than it commits in this long (and at least --max-batch); 0 is off"},
		{"admission-max-limit", "HOLDFAST_ADMISSION_MAX_LIMIT", &c.AdmissionMaxLimit, "highest concurrency limit of a route class; 0 means 1000"},
		{"admission-max-latency", "HOLDFAST_ADMISSION_MAX_LATENCY", &c.AdmissionMaxLatency, "shrink a class's limit whenever its mean latency exceeds this; 0 is off"},
		{"admission-tolerance", "HOLDFAST_ADMISSION_TOLERANCE", &c.AdmissionTolerance, "how many times its baseline latency a class's mean latency may reach before its limit shrinks; 0 means 4"},
		{"admission-queue-wait", "HOLDFAST_ADMISSION_QUEUE_WAIT", &c.AdmissionQueueWait, "longest a request waits for capacity while the queue drains (CoDel's interval; 5ms once a queue stands); 0 means 100ms"},
		{"cpu-lane-size", "HOLDFAST_CPU_LANE_SIZE", &c.CPULaneSize, "CPU-bound jobs at once; 0 means GOMAXPROCS-1 (at least 1), negative unbounded"},
		{"cpu-lane-queue", "HOLDFAST_CPU_LANE_QUEUE", &c.CPULaneQueue, "CPU-bound jobs that may wait for the lane; 0 means the lane's size"},
		{"db-acquire-timeout", "HOLDFAST_DB_ACQUIRE_TIMEOUT", &c.DBAcquireTimeout, "longest wait for a database connection before a request fails with 503; negative waits for the request's deadline"},
		{"db-statement-timeout", "HOLDFAST_DB_STATEMENT_TIMEOUT", &c.DBStatementTimeout, "server-side limit on each SQL statement"},
		{"rate-limit", "HOLDFAST_RATE_LIMIT", &c.RateLimit, "requests per second per tenant, all its API keys together (429 beyond); 0 is no limit"},
		{"rate-limit-burst", "HOLDFAST_RATE_LIMIT_BURST", &c.RateLimitBurst, "requests a tenant may send at once after a quiet spell; 0 means the rate"},
		{"redis-url", "REDIS_URL", &c.RedisURL, "Redis URL: hold the per-tenant rate limit in Redis, shared by every replica; empty keeps it in this process"},
		// The event log (app/events.go).
		{"events-max-bytes", "HOLDFAST_EVENTS_MAX_BYTES", &c.Events.MaxBytes, "size cap of the events stream; past it, publishing is refused with 503"},
		{"events-max-age", "HOLDFAST_EVENTS_MAX_AGE", &c.Events.MaxAge, "how long the events stream keeps events"},
		{"events-duplicate-window", "HOLDFAST_EVENTS_DUPLICATE_WINDOW", &c.Events.Duplicates, "an event id (a relay's republish, a client's retry of POST /v1/events) is stored once within this window; the stream server keeps every id of the window in memory, ~140 bytes each"},
		{"events-replay-window", "HOLDFAST_EVENTS_REPLAY_WINDOW", &c.Events.ReplayWindow, "an event every consumer group has applied is kept this long after it was stored, then purged (events no group has applied are never purged, up to --events-max-age)"},
		{"events-client-share", "HOLDFAST_EVENTS_CLIENT_SHARE", &c.Events.ClientShare, "percent of --events-max-bytes client events (POST /v1/events) may fill; past it they get 503 and the rest is kept for the ledger's events"},
		{"events-quota", "HOLDFAST_EVENTS_QUOTA", &c.Events.Quota, "client events one tenant may send per --events-quota-period (429 beyond), held in each replica; 0 is no quota"},
		{"events-quota-bytes", "HOLDFAST_EVENTS_QUOTA_BYTES", &c.Events.QuotaBytes, "bytes of client events (their types and properties) one tenant may send per --events-quota-period"},
		{"events-quota-period", "HOLDFAST_EVENTS_QUOTA_PERIOD", &c.Events.QuotaPeriod, "the period of --events-quota and --events-quota-bytes"},
		{"events-window", "HOLDFAST_EVENTS_WINDOW", &c.Events.Window, "client events this process may have on their way to the stream; beyond, POST /v1/events gets 503"},
		{"consumer-batch", "HOLDFAST_CONSUMER_BATCH", &c.Events.Batch, "messages a consumer group fetches at once, and events it applies in one transaction (a message of a group-commit batch's events is applied whole)"},
		{"consumer-ack-wait", "HOLDFAST_CONSUMER_ACK_WAIT", &c.Events.AckWait, "an unacknowledged batch is delivered again after this, unless its worker sends heartbeats"},
		{"consumer-max-ack-pending", "HOLDFAST_CONSUMER_MAX_ACK_PENDING", &c.Events.MaxAckPending, "events delivered to a group and not yet acknowledged, across all replicas"},
		{"consumer-workers", "HOLDFAST_CONSUMER_WORKERS", &c.Events.Workers, "batches each group works on at once in this replica"},
		{"consumer-cooldown", "HOLDFAST_CONSUMER_COOLDOWN", &c.Events.Cooldown, "how long a group pauses itself when its database times out or refuses connections"},
		{"consumer-yield-depth", "HOLDFAST_CONSUMER_YIELD_DEPTH", &c.Events.YieldDepth, "while at least this many transfer requests wait for group commit, consumer groups wait 100ms before each batch: requests first, the log absorbs the events; 0 never"},
		// Webhooks (app/webhooks.go).
		{"webhook-secret-key", "HOLDFAST_WEBHOOK_SECRET_KEY", &c.Webhooks.SecretKey, "32-byte key, in hex or base64, sealing webhook endpoints' signing secrets at rest (AES-256-GCM); the same on every replica; empty turns webhooks off (dev keeps one in its data directory). Generate one with 'openssl rand -hex 32'"},
		{"webhook-timeout", "HOLDFAST_WEBHOOK_TIMEOUT", &c.Webhooks.Timeout, "a webhook attempt succeeds on a 2xx answer within this"},
		{"webhook-schedule-scale", "HOLDFAST_WEBHOOK_SCHEDULE_SCALE", &c.Webhooks.ScheduleScale, "multiplies the retry schedule (at once, 5s, 5m, 30m, 2h, 5h, 10h, 10h); below 1 for tests"},
		{"webhook-allow-private", "HOLDFAST_WEBHOOK_ALLOW_PRIVATE", &c.Webhooks.AllowPrivate, "let endpoints reach loopback, private, link-local and metadata addresses (development and tests; dev defaults to true)"},
		{"webhook-disable-after", "HOLDFAST_WEBHOOK_DISABLE_AFTER", &c.Webhooks.DisableAfter, "an endpoint failing without a success for this long is disabled, and its tenant gets a webhook_endpoint.disabled event"},
		{"webhook-max-in-flight", "HOLDFAST_WEBHOOK_MAX_IN_FLIGHT", &c.Webhooks.MaxInFlight, "webhook attempts (outbound connections) this replica makes at once"},
		{"webhook-per-endpoint", "HOLDFAST_WEBHOOK_PER_ENDPOINT", &c.Webhooks.PerEndpoint, "one endpoint's webhook attempts at once, across every replica"},
		{"webhook-rate", "HOLDFAST_WEBHOOK_RATE", &c.Webhooks.Rate, "one endpoint's webhook attempts per second from this replica (a token bucket of --webhook-per-endpoint); negative is no cap"},
		{"webhook-rotation-overlap", "HOLDFAST_WEBHOOK_ROTATION_OVERLAP", &c.Webhooks.Overlap, "after a secret rotation, the previous secret keeps signing beside the new one this long"},
		{"consumer-delay", "HOLDFAST_CONSUMER_DELAY", &c.Events.Delay, "added per event consumed, to simulate a slow downstream and watch lag"},
		// The receipt pipeline (app/receipts.go).
		{"receipt-cap", "HOLDFAST_RECEIPT_CAP", &c.Receipts.Cap, "receipt jobs in flight at once across every replica (the work queue's MaxAckPending)"},
		{"receipt-workers", "HOLDFAST_RECEIPT_WORKERS", &c.Receipts.Workers, "receipt jobs this replica works on at once; 0 means the cap"},
		{"receipt-visibility-timeout", "HOLDFAST_RECEIPT_VISIBILITY_TIMEOUT", &c.Receipts.AckWait, "a job whose worker died is delivered again after this; live workers extend it with heartbeats"},
		{"receipt-max-deliveries", "HOLDFAST_RECEIPT_MAX_DELIVERIES", &c.Receipts.MaxDeliveries, "tries of a receipt job before it goes to the dead-letter stream; a job whose image cannot be decoded goes there at its first failure"},
		{"receipt-backoff", "HOLDFAST_RECEIPT_BACKOFF", &c.Receipts.BackoffBase, "delay before the first retry of a failed job; it doubles each time, with jitter"},
		{"blob-gc-interval", "HOLDFAST_BLOB_GC_INTERVAL", &c.Receipts.GCInterval, "pause between sweeps that delete the receipt images (originals and variants) no receipt refers to any more; 0 turns them off"},
		{"blob-gc-grace", "HOLDFAST_BLOB_GC_GRACE", &c.Receipts.GCGrace, "an image stored within this is never swept, referred to or not; at least 10 × the visibility timeout, so a job's variants are referred to before they can go"},
		{"blob-url", "HOLDFAST_BLOB_URL", &c.Receipts.BlobURL, "where receipt images are stored: empty for the data directory (one node), or `s3://bucket?endpoint=http://host:port&region=name` for an S3-compatible bucket that every replica shares (with the same database)"},
		{"blob-access-key", "AWS_ACCESS_KEY_ID", &c.Receipts.BlobAccessKey, "access key of the --blob-url bucket"},
		{"blob-secret-key", "AWS_SECRET_ACCESS_KEY", &c.Receipts.BlobSecretKey, "secret key of the --blob-url bucket; prefer the environment variable, which other users cannot read in the process list"},
		{"receipt-quota-mib", "HOLDFAST_RECEIPT_QUOTA_MIB", &c.Receipts.QuotaMiB, "MiB of receipt images (the originals uploaded) one tenant may have stored, across every replica; an upload past it is refused (422 quota-exceeded); 0 means no quota"},
		{"receipt-db-conns", "HOLDFAST_RECEIPT_DB_CONNS", &c.Receipts.DBConns, "database connections of this replica's receipt workers: replicas × this stays within the database's budget"},
	}
}

// parseSettings registers the table's flags on fs, applies the environment,
// then the command line, which wins. An unset or empty variable leaves the
// default; a malformed one is an error naming it, so that a typo cannot
// fall back to the default unnoticed.
func parseSettings(fs *flag.FlagSet, table []setting, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	for _, s := range table {
		help := s.help + " (env " + s.env + ")"
		switch p := s.value.(type) {
		case *string:
			fs.StringVar(p, s.flag, *p, help)
		case *bool:
			fs.BoolVar(p, s.flag, *p, help)
		case *int:
			fs.IntVar(p, s.flag, *p, help)
		case *int64:
			fs.Int64Var(p, s.flag, *p, help)
		case *float64:
			fs.Float64Var(p, s.flag, *p, help)
		case *time.Duration:
			fs.DurationVar(p, s.flag, *p, help)
		case flag.Value:
			fs.Var(p, s.flag, help)
		default:
			panic(fmt.Sprintf("setting --%s: unsupported type %T", s.flag, s.value))
		}
	}
	for _, s := range table {
		v, ok := lookupEnv(s.env)
		if !ok || v == "" {
			continue
		}
		if err := fs.Set(s.flag, v); err != nil {
			return fmt.Errorf("environment variable %s=%q: %s (it sets --%s)", s.env, v, want(s.value, err), s.flag)
		}
	}
	return parseArgs(fs, args, stdout, stderr)
}

// want says what a setting of value's type takes, for an error.
func want(value any, err error) string {
	switch value.(type) {
	case *bool:
		return "want true or false"
	case *int, *int64:
		return "want an integer"
	case *float64:
		return "want a number"
	case *time.Duration:
		return "want a duration with its unit, such as 500ms, 30s or 24h"
	}
	return err.Error()
}

// listenAddr is a listen address: host:port, or a bare port, which means
// 127.0.0.1 (loopback only).
type listenAddr string

func (a *listenAddr) String() string { return string(*a) }

func (a *listenAddr) Set(v string) error {
	if v == "" {
		*a = ""
		return nil
	}
	if _, err := strconv.Atoi(v); err == nil {
		v = "127.0.0.1:" + v
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("want host:port or a port, such as 127.0.0.1:8080 or 8080")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("want a port number from 0 to 65535, not %q", port)
	}
	*a = listenAddr(v)
	return nil
}

// logLevel is a log level: debug, info, warn or error.
type logLevel string

func (l *logLevel) String() string { return string(*l) }

func (l *logLevel) Set(v string) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	*l = logLevel(v)
	return nil
}
