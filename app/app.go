// Package app assembles Holdfast from its adapters: Config says what to
// run, and Main opens the database, NATS, the event log, the receipt
// pipeline and the HTTP API in order (Start) and closes them in reverse
// (Stop). The holdfast command turns flags and environment into a Config;
// tests and benchmarks start a Main in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/console"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/natsconn"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

// Config is everything `serve` and `dev` can be told. Each field has a flag
// and an environment variable in the settings table of cmd/holdfast, where
// the flag wins; NewMain sets the defaults the comments give.
type Config struct {
	Dev                    bool          // run with a private PostgreSQL and a demo tenant
	Addr                   string        // --addr, HOLDFAST_ADDR; default ":8080" (dev: 127.0.0.1:8080)
	MetricsAddr            string        // --metrics-addr, HOLDFAST_METRICS_ADDR; empty: /metrics on --addr
	DataDir                string        // --data-dir, HOLDFAST_DATA_DIR; default ".holdfast"
	DatabaseURL            string        // --database-url, DATABASE_URL
	NATSURL                string        // --nats-url, NATS_URL; empty: embedded NATS; a cluster's servers comma-separated
	NATSReplicas           int           // --nats-replicas, HOLDFAST_NATS_REPLICAS: copies of streams and consumers; 0: 3 in a cluster, else 1
	DatabaseReadURL        string        // --database-read-url, DATABASE_READ_URL: a streaming replica for exports and lists; empty: none
	DBReadMaxConns         int           // --db-read-max-conns: the replica's pool; 0: the primary pool's size
	ReplicaMaxLag          time.Duration // --replica-max-lag: past it, reads go to the primary; default 30s
	NATSListen             string        // --nats-listen: the embedded NATS's client port; default none (dev: 127.0.0.1:4223)
	Reset                  bool          // dev --reset: delete the data directory's state first
	AdminToken             string        // --admin-token, HOLDFAST_ADMIN_TOKEN
	DBMaxConns             int           // --db-max-conns, HOLDFAST_DB_MAX_CONNS; default 4 × cores
	RequestTimeout         time.Duration // --request-timeout; default 30s
	BodyLimit              int64         // --body-limit (bytes); default 1 MiB
	IdempotencyRetention   time.Duration // --idempotency-retention; default 24h
	HoldSweepInterval      time.Duration // --hold-sweep-interval; default 1s
	IdempotencyLockTimeout time.Duration // --idempotency-lock-timeout; default 1m
	GroupCommit            bool          // --group-commit; default true
	MaxBatch               int           // --max-batch; default 1000
	Committers             int           // --committers; default 2
	ShutdownTimeout        time.Duration // --shutdown-timeout; default 30s
	LogLevel               string        // --log-level: debug, info, warn, error
	Migrate                bool          // --migrate: apply migrations at start; default true
	ExportSlots            int           // --export-slots: concurrent exports (and export connections); 0: 4 × GOMAXPROCS
	ExportSlotsPerTenant   int           // --export-slots-per-tenant: one tenant's concurrent exports; 0: 2
	Events                 EventConfig   // the event log (see events.go)
	Receipts               ReceiptConfig // the receipt pipeline (see receipts.go)
	Webhooks               WebhookConfig // webhook delivery (see webhooks.go)

	// Overload protection (see package overload and README "Overload protection").
	Admission           bool          // --admission: adaptive admission control per route class; default true
	AdmissionMinLimit   int           // --admission-min-limit; default 64; 0: the package's 20
	AdmissionWriteMin   int           // --admission-write-min-limit: the write class's floor; default 1000 (group commit needs concurrency to fill batches)
	LedgerMaxWait       time.Duration // --ledger-max-wait: with admission, the longest group-commit queue delay a transfer is admitted to; default 60ms; 0: off
	AdmissionMaxLimit   int           // --admission-max-limit; 0: 1000
	AdmissionMaxLatency time.Duration // --admission-max-latency: shrink the limit above this mean latency; 0: off
	AdmissionQueueWait  time.Duration // --admission-queue-wait: longest wait for capacity (CoDel interval); 0: 100ms
	AdmissionTolerance  float64       // --admission-tolerance: times the baseline latency a class may reach before its limit shrinks; 0: 4
	CPULaneSize         int           // --cpu-lane-size: CPU-bound jobs at once; 0: GOMAXPROCS-1 (at least 1); negative: unbounded
	CPULaneQueue        int           // --cpu-lane-queue: CPU-bound jobs that may wait; 0: the lane's size
	DBAcquireTimeout    time.Duration // --db-acquire-timeout; default 1s; negative: the request's deadline
	DBStatementTimeout  time.Duration // --db-statement-timeout; default 30s
	RateLimit           float64       // --rate-limit: requests per second per tenant (all its keys); default 1000; 0: no limit
	RateLimitBurst      int           // --rate-limit-burst; 0: the rate
	RedisURL            string        // --redis-url, REDIS_URL: share the rate limit across replicas through Redis
}

// Main is the running program: what `serve` and `dev` start, and what
// end-to-end tests start in-process on :0.
type Main struct {
	Config Config
	Stdout io.Writer

	Logger *slog.Logger
	// Registry holds the in-process metrics (the console samples it every
	// second); the metrics read from PostgreSQL and NATS, behind caches,
	// are in a registry of their own, and /metrics serves both (Gatherer).
	Registry *prometheus.Registry
	Cluster  *pglocal.Cluster // dev only
	DB       *postgres.DB
	NATS     *natsconn.Conn // set before Run to share another Main's NATS (a second replica in the lab)
	HTTP     *holdfasthttp.Server

	// Lane runs CPU-bound work (image processing) within a few cores, so
	// that /healthz and I/O-bound requests keep the rest.
	Lane      *overload.Lane
	Admission *overload.Admission // nil with --admission=false

	slowMetrics *prometheus.Registry // collectors that ask PostgreSQL or NATS, cached
	console     *console.Console

	redis     *redis.Client
	dev       *devState // dev's demo tenant, key and accounts
	devLock   *os.File  // held while dev runs on the data directory
	events    *eventLog
	receipts  *receiptPipeline
	webhooks  *webhooks.Dispatcher
	transfers *postgres.TransferService
	rotator   *postgres.KeyRotator
	sweeper   *postgres.HoldSweeper
	exports   *postgres.ExportService
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	m := &Main{
		Config: Config{
			Addr: DefaultAddr, DataDir: ".holdfast", RequestTimeout: 30 * time.Second, BodyLimit: 1 << 20,
			IdempotencyRetention: holdfast.DefaultIdempotencyRetention, IdempotencyLockTimeout: holdfast.DefaultIdempotencyLockTimeout,
			GroupCommit: true, MaxBatch: 1000, HoldSweepInterval: time.Second, Committers: 2, ShutdownTimeout: 30 * time.Second, LogLevel: "info", Migrate: true,
			Admission: true, AdmissionMinLimit: 64, AdmissionWriteMin: 1000, LedgerMaxWait: 60 * time.Millisecond, DBAcquireTimeout: time.Second, DBStatementTimeout: 30 * time.Second, RateLimit: 1000,
		},
		Stdout: os.Stdout,
	}
	m.Config.ReplicaMaxLag = 30 * time.Second
	m.Config.Events = defaultEventConfig()
	m.Config.Receipts = defaultReceiptConfig()
	m.Config.Webhooks = defaultWebhookConfig()
	return m
}

// Listen addresses: serve's, and dev's, which prints an admin token and the
// demo key and so listens on loopback only.
const (
	DefaultAddr   = ":8080"
	DevAddr       = "127.0.0.1:8080"
	DevNATSListen = "127.0.0.1:4223"
)

// Start starts everything and returns once the API is listening. On an
// error, what had started is left for Stop.
func (m *Main) Start(ctx context.Context) error {
	if err := m.prepare(); err != nil {
		return err
	}
	dbURL, err := m.openStore(ctx)
	if err != nil {
		return err
	}
	if err := m.openNATS(ctx); err != nil {
		return err
	}
	if err := m.openLedger(ctx); err != nil {
		return err
	}
	if err := m.openHTTP(ctx); err != nil {
		return err
	}
	if err := m.openEventLog(ctx); err != nil {
		return err
	}
	if err := m.openReceipts(ctx, dbURL); err != nil {
		return err
	}
	if err := m.startNATSSetup(ctx); err != nil {
		return err
	}
	if err := m.openConsole(ctx); err != nil {
		return err
	}
	if err := m.HTTP.Open(); err != nil {
		return err
	}
	m.Logger.Info("holdfast listening", "addr", m.HTTP.Addr(), "group_commit", m.Config.GroupCommit, "embedded_nats", m.NATS.Embedded())
	if m.Config.Dev {
		m.printDevBanner(dbURL)
	}
	return nil
}

// prepare sets the logger and registry a test or benchmark did not set,
// makes the data directory (locking and, with --reset, emptying it for dev)
// and fails before anything starts if the listen address is taken.
func (m *Main) prepare() (err error) {
	c := m.Config
	if m.Logger == nil {
		var level slog.Level
		if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return fmt.Errorf("--log-level: %w", err)
		}
		m.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if m.Registry == nil {
		m.Registry = prometheus.NewRegistry()
		m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m.slowMetrics = prometheus.NewRegistry()
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if c.Dev {
		if m.devLock, err = lockDataDir(c.DataDir); err != nil {
			return err
		}
		if c.Reset {
			if err := resetDataDir(c.DataDir); err != nil {
				return err
			}
		}
	}
	if c.Addr != "" {
		ln, err := net.Listen("tcp", c.Addr)
		if err != nil {
			return fmt.Errorf("--addr: %w; stop what listens there, or choose another --addr", err)
		}
		ln.Close()
	}
	return nil
}

// openStore opens the database (dev's private cluster, without a
// DATABASE_URL) and applies the migrations; it returns the database's URL.
func (m *Main) openStore(ctx context.Context) (dbURL string, err error) {
	c := m.Config
	dbURL = c.DatabaseURL
	if dbURL == "" && c.Dev {
		m.Cluster, err = pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(c.DataDir, "postgres")})
		if errors.Is(err, pglocal.ErrNotInstalled) {
			return "", fmt.Errorf("start private PostgreSQL: %w; or set DATABASE_URL to use a server of yours", err)
		} else if err != nil {
			return "", fmt.Errorf("start private PostgreSQL: %w", err)
		}
		if err := m.Cluster.CreateDatabase(ctx, "holdfast"); err != nil {
			return "", err
		}
		dbURL = m.Cluster.URL("holdfast")
	}
	m.DB, err = postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: int32(c.DBMaxConns),
		AcquireTimeout: c.DBAcquireTimeout, StatementTimeout: c.DBStatementTimeout})
	if err != nil {
		return "", err
	}
	m.Registry.MustRegister(m.DB.Collector())
	if c.DatabaseReadURL != "" {
		// History reads (exports, lists) go to the replica: docs/decisions/0077.
		if err := m.DB.OpenReplica(ctx, postgres.ReplicaConfig{URL: c.DatabaseReadURL, MaxConns: int32(c.DBReadMaxConns),
			MaxLag: c.ReplicaMaxLag, Logger: m.Logger, Registerer: m.Registry}); err != nil {
			return "", fmt.Errorf("--database-read-url: %w", err)
		}
	}
	if c.Migrate {
		if err := postgres.Migrate(ctx, m.DB); err != nil {
			return "", err
		}
	}
	return dbURL, nil
}

// openLedger starts the transfer service, with its group-commit writer,
// the sweeper of holds past their timeout and the rotator of the
// Idempotency-Keys' partitions.
func (m *Main) openLedger(ctx context.Context) (err error) {
	c := m.Config
	wc := postgres.WriterConfig{MaxBatch: c.MaxBatch, Committers: c.Committers, Registerer: m.Registry}
	if c.Admission {
		wc.MaxWait = c.LedgerMaxWait
	}
	m.transfers, err = postgres.NewTransferServiceWith(m.DB, postgres.TransferConfig{GroupCommit: c.GroupCommit, Writer: wc})
	if err != nil {
		return err
	}
	if err := m.transfers.Start(ctx); err != nil {
		return err
	}
	m.sweeper = postgres.NewHoldSweeper(m.transfers, postgres.HoldSweeperConfig{Interval: c.HoldSweepInterval, Logger: m.Logger})
	m.sweeper.Start(ctx)
	// Less than a day breaks the promise clients are given; it is allowed,
	// loudly, because a soak must turn the partitions over in minutes.
	switch r := c.IdempotencyRetention; {
	case r < minIdempotencyRetention:
		return fmt.Errorf("--idempotency-retention %v: at least %v", r, minIdempotencyRetention)
	case r < holdfast.DefaultIdempotencyRetention:
		m.Logger.Warn("idempotency keys are kept for less than clients are promised", "retention", r, "promised", holdfast.DefaultIdempotencyRetention)
	}
	if m.rotator, err = postgres.NewKeyRotator(m.DB, postgres.KeyRotatorConfig{
		Retention: c.IdempotencyRetention, Logger: m.Logger}); err != nil {
		return err
	}
	return m.rotator.Start(ctx)
}

// minIdempotencyRetention is the shortest --idempotency-retention: a key
// must outlive its own request and the client's first retries.
const minIdempotencyRetention = 10 * time.Second

// openHTTP makes the API server (not yet listening) with overload
// protection and the ledger's services, and dev's demo tenant.
func (m *Main) openHTTP(ctx context.Context) (err error) {
	if m.Config.Dev {
		if err := m.openDev(ctx); err != nil {
			return err
		}
	}
	c := m.Config
	rateLimiter, err := m.openProtection(ctx)
	if err != nil {
		return err
	}
	eventQuota, err := m.eventQuota()
	if err != nil {
		return err
	}
	m.HTTP, err = holdfasthttp.NewServer(holdfasthttp.Config{
		Addr: c.Addr, MetricsAddr: c.MetricsAddr, AdminToken: c.AdminToken, BodyLimit: c.BodyLimit, RequestTimeout: c.RequestTimeout,
		Logger: m.Logger, Registerer: m.Registry, Gatherer: m.Gatherer(),
		ExportSlots: c.ExportSlots, ExportSlotsPerTenant: c.ExportSlotsPerTenant,
		Admission: m.Admission, RateLimiter: rateLimiter, EventQuota: eventQuota,
	})
	if err != nil {
		return err
	}
	m.HTTP.TenantService = postgres.NewTenantService(m.DB)
	m.HTTP.AccountService = postgres.NewAccountService(m.DB)
	m.HTTP.BalanceService = postgres.NewBalanceService(m.DB)
	m.HTTP.TransferService = m.transfers
	m.HTTP.IdempotencyService = postgres.NewIdempotencyService(m.DB, c.IdempotencyLockTimeout)
	// The export pool gets one connection per export slot (both default to 4 × GOMAXPROCS).
	m.exports, err = postgres.NewExportService(m.DB, postgres.ExportConfig{MaxConns: int32(c.ExportSlots)})
	if err != nil {
		return err
	}
	m.HTTP.ExportService = m.exports
	// Ready is PostgreSQL answering: without NATS the ledger still works
	// (events wait in the outbox), so NATS goes to holdfast_nats_connected.
	m.HTTP.Ready = func(ctx context.Context) error {
		if err := m.DB.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
	return nil
}

// Stop shuts down in reverse order of start: stop accepting and drain
// requests, stop the key rotator and the transfers' group commit, close NATS,
// the pool, the cluster.
// Safe after a failed Start.
func (m *Main) Stop() error {
	var errs []error
	if m.console != nil {
		m.console.Stop()
	}
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
		errs = append(errs, m.HTTP.Close(ctx))
		cancel()
	}
	if m.exports != nil {
		m.exports.Close()
	}
	m.stopNATSSetup() // before it could start a worker being stopped
	m.closeReceipts()
	m.closeEventLog()
	m.closeWebhooks()
	if m.rotator != nil {
		m.rotator.Stop()
	}
	if m.sweeper != nil {
		m.sweeper.Stop()
	}
	if m.transfers != nil {
		m.transfers.Stop()
	}
	m.closeNATS()
	if m.redis != nil {
		errs = append(errs, m.redis.Close())
	}
	if m.DB != nil {
		m.DB.Close()
	}
	if m.Cluster != nil {
		errs = append(errs, m.Cluster.Stop())
	}
	if m.devLock != nil {
		m.devLock.Close()
	}
	return errors.Join(errs...)
}
