package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/jetstream"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
)

// Config is everything `serve` and `dev` can be told. Each field has a flag
// and an environment variable; the flag wins.
type Config struct {
	Dev                    bool          // run with a private PostgreSQL and a demo tenant
	Addr                   string        // --addr, HOLDFAST_ADDR; default ":8080"
	DataDir                string        // --data-dir, HOLDFAST_DATA_DIR; default ".holdfast"
	DatabaseURL            string        // --database-url, DATABASE_URL
	NATSURL                string        // --nats-url, NATS_URL; empty: embedded NATS
	AdminToken             string        // --admin-token, HOLDFAST_ADMIN_TOKEN
	DBMaxConns             int           // --db-max-conns, HOLDFAST_DB_MAX_CONNS; default 4 × cores
	RequestTimeout         time.Duration // --request-timeout; default 30s
	BodyLimit              int64         // --body-limit (bytes); default 1 MiB
	IdempotencyRetention   time.Duration // --idempotency-retention; default 24h
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
	RateLimit           float64       // --rate-limit: requests per second per API key; default 1000; 0: no limit
	RateLimitBurst      int           // --rate-limit-burst; 0: the rate
	RedisURL            string        // --redis-url, REDIS_URL: share the rate limit across replicas through Redis
}

// Main is the running program: what `serve` and `dev` start, and what
// end-to-end tests start in-process on :0.
type Main struct {
	Config Config
	Stdout io.Writer

	Logger   *slog.Logger
	Registry *prometheus.Registry
	Cluster  *pglocal.Cluster // dev only
	DB       *postgres.DB
	NATS     *jetstream.Conn // set before Run to share another Main's NATS (a second replica in the lab)
	HTTP     *holdfasthttp.Server

	// Lane runs CPU-bound work (image processing) within a few cores, so
	// that /healthz and I/O-bound requests keep the rest.
	Lane      *overload.Lane
	Admission *overload.Admission // nil with --admission=false

	redis    *redis.Client
	events   *eventLog
	receipts *receiptPipeline
	writer   *postgres.Writer
	reaper   *postgres.Reaper
	exports  *postgres.ExportService
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	m := &Main{
		Config: Config{
			Addr: ":8080", DataDir: ".holdfast", RequestTimeout: 30 * time.Second, BodyLimit: 1 << 20,
			IdempotencyRetention: holdfast.DefaultIdempotencyRetention, IdempotencyLockTimeout: holdfast.DefaultIdempotencyLockTimeout,
			GroupCommit: true, MaxBatch: 1000, Committers: 2, ShutdownTimeout: 30 * time.Second, LogLevel: "info", Migrate: true,
			Admission: true, AdmissionMinLimit: 64, AdmissionWriteMin: 1000, LedgerMaxWait: 60 * time.Millisecond, DBAcquireTimeout: time.Second, DBStatementTimeout: 30 * time.Second, RateLimit: 1000,
		},
		Stdout: os.Stdout,
	}
	m.Config.Events = defaultEventConfig()
	m.Config.Receipts = defaultReceiptConfig()
	return m
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return f
	}
	return def
}

func envBool(name string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(name)); err == nil {
		return b
	}
	return def
}

// ParseFlags reads the command's flags, with environment variables as defaults.
func (m *Main) ParseFlags(cmd string, args []string, stderr io.Writer) error {
	c := &m.Config
	fs := flag.NewFlagSet("holdfast "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		if c.Dev {
			fmt.Fprint(stderr, "Usage: holdfast dev [flags]\n\nServe the API for development: a private PostgreSQL in the data directory\n(unless DATABASE_URL is set), an embedded NATS, and a demo tenant whose API key is printed.\n\nFlags:\n")
		} else {
			fmt.Fprint(stderr, "Usage: holdfast serve [flags]\n\nServe the API against DATABASE_URL, with an embedded NATS unless NATS_URL is set.\n\nFlags:\n")
		}
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", env("HOLDFAST_ADDR", c.Addr), "listen address (env HOLDFAST_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", env("HOLDFAST_DATA_DIR", c.DataDir), "data directory: embedded NATS files, the dev PostgreSQL (env HOLDFAST_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("DATABASE_URL", c.DatabaseURL), "PostgreSQL URL (env DATABASE_URL); required by serve, optional for dev")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", c.NATSURL), "external NATS URL (env NATS_URL); empty runs an embedded server in the data directory, which only one replica on a database may do: replicas share one NATS through this flag")
	fs.StringVar(&c.AdminToken, "admin-token", env("HOLDFAST_ADMIN_TOKEN", c.AdminToken), "bearer token for /v1/admin (env HOLDFAST_ADMIN_TOKEN); empty disables the admin API (dev generates one)")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", envInt("HOLDFAST_DB_MAX_CONNS", c.DBMaxConns), "database pool size (env HOLDFAST_DB_MAX_CONNS); 0 means 4 × cores, at least 8")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", envDuration("HOLDFAST_REQUEST_TIMEOUT", c.RequestTimeout), "deadline of each request (env HOLDFAST_REQUEST_TIMEOUT)")
	fs.Int64Var(&c.BodyLimit, "body-limit", int64(envInt("HOLDFAST_BODY_LIMIT", int(c.BodyLimit))), "largest request body in bytes (env HOLDFAST_BODY_LIMIT)")
	fs.DurationVar(&c.IdempotencyRetention, "idempotency-retention", envDuration("HOLDFAST_IDEMPOTENCY_RETENTION", c.IdempotencyRetention), "how long Idempotency-Keys are kept (env HOLDFAST_IDEMPOTENCY_RETENTION)")
	fs.DurationVar(&c.IdempotencyLockTimeout, "idempotency-lock-timeout", envDuration("HOLDFAST_IDEMPOTENCY_LOCK_TIMEOUT", c.IdempotencyLockTimeout), "after this a retry may take over a key whose first request never finished (env HOLDFAST_IDEMPOTENCY_LOCK_TIMEOUT)")
	fs.BoolVar(&c.GroupCommit, "group-commit", envBool("HOLDFAST_GROUP_COMMIT", c.GroupCommit), "apply concurrent transfers in shared transactions (env HOLDFAST_GROUP_COMMIT)")
	fs.IntVar(&c.MaxBatch, "max-batch", envInt("HOLDFAST_MAX_BATCH", c.MaxBatch), "most transfer requests per group-commit transaction (env HOLDFAST_MAX_BATCH)")
	fs.IntVar(&c.Committers, "committers", envInt("HOLDFAST_COMMITTERS", c.Committers), "group-commit transactions in flight at once, each on its own connection (env HOLDFAST_COMMITTERS)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDuration("HOLDFAST_SHUTDOWN_TIMEOUT", c.ShutdownTimeout), "how long SIGTERM waits for in-flight requests (env HOLDFAST_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.LogLevel, "log-level", env("HOLDFAST_LOG_LEVEL", c.LogLevel), "debug, info, warn or error (env HOLDFAST_LOG_LEVEL)")
	fs.BoolVar(&c.Migrate, "migrate", envBool("HOLDFAST_MIGRATE", c.Migrate), "apply database migrations at start (env HOLDFAST_MIGRATE)")
	fs.IntVar(&c.ExportSlots, "export-slots", envInt("HOLDFAST_EXPORT_SLOTS", c.ExportSlots), "most concurrent exports, each with its own database connection; 0 means 4 × cores (env HOLDFAST_EXPORT_SLOTS)")
	fs.IntVar(&c.ExportSlotsPerTenant, "export-slots-per-tenant", envInt("HOLDFAST_EXPORT_SLOTS_PER_TENANT", c.ExportSlotsPerTenant), "most concurrent exports of one tenant; 0 means 2 (env HOLDFAST_EXPORT_SLOTS_PER_TENANT)")
	fs.BoolVar(&c.Admission, "admission", envBool("HOLDFAST_ADMISSION", c.Admission), "adaptive admission control per route class: shed excess requests with 503 + Retry-After (env HOLDFAST_ADMISSION)")
	fs.IntVar(&c.AdmissionMinLimit, "admission-min-limit", envInt("HOLDFAST_ADMISSION_MIN_LIMIT", c.AdmissionMinLimit), "lowest concurrency limit of a route class (env HOLDFAST_ADMISSION_MIN_LIMIT)")
	fs.IntVar(&c.AdmissionWriteMin, "admission-write-min-limit", envInt("HOLDFAST_ADMISSION_WRITE_MIN_LIMIT", c.AdmissionWriteMin), "lowest concurrency limit of writes: group commit needs concurrency to fill its batches, and --ledger-max-wait sheds transfers by the queue's delay instead (env HOLDFAST_ADMISSION_WRITE_MIN_LIMIT)")
	fs.DurationVar(&c.LedgerMaxWait, "ledger-max-wait", envDuration("HOLDFAST_LEDGER_MAX_WAIT", c.LedgerMaxWait), "with --admission: a transfer is refused at once (503) while more wait for group commit than it commits in this long (and at least --max-batch); 0 is off (env HOLDFAST_LEDGER_MAX_WAIT)")
	fs.IntVar(&c.AdmissionMaxLimit, "admission-max-limit", envInt("HOLDFAST_ADMISSION_MAX_LIMIT", c.AdmissionMaxLimit), "highest concurrency limit of a route class; 0 means 1000 (env HOLDFAST_ADMISSION_MAX_LIMIT)")
	fs.DurationVar(&c.AdmissionMaxLatency, "admission-max-latency", envDuration("HOLDFAST_ADMISSION_MAX_LATENCY", c.AdmissionMaxLatency), "shrink a class's limit whenever its mean latency exceeds this; 0 is off (env HOLDFAST_ADMISSION_MAX_LATENCY)")
	fs.Float64Var(&c.AdmissionTolerance, "admission-tolerance", envFloat("HOLDFAST_ADMISSION_TOLERANCE", c.AdmissionTolerance), "how many times its baseline latency a class's mean latency may reach before its limit shrinks; 0 means 4 (env HOLDFAST_ADMISSION_TOLERANCE)")
	fs.DurationVar(&c.AdmissionQueueWait, "admission-queue-wait", envDuration("HOLDFAST_ADMISSION_QUEUE_WAIT", c.AdmissionQueueWait), "longest a request waits for capacity while the queue drains (CoDel's interval; 5ms once a queue stands); 0 means 100ms (env HOLDFAST_ADMISSION_QUEUE_WAIT)")
	fs.IntVar(&c.CPULaneSize, "cpu-lane-size", envInt("HOLDFAST_CPU_LANE_SIZE", c.CPULaneSize), "CPU-bound jobs at once; 0 means GOMAXPROCS-1 (at least 1), negative unbounded (env HOLDFAST_CPU_LANE_SIZE)")
	fs.IntVar(&c.CPULaneQueue, "cpu-lane-queue", envInt("HOLDFAST_CPU_LANE_QUEUE", c.CPULaneQueue), "CPU-bound jobs that may wait for the lane; 0 means the lane's size (env HOLDFAST_CPU_LANE_QUEUE)")
	fs.DurationVar(&c.DBAcquireTimeout, "db-acquire-timeout", envDuration("HOLDFAST_DB_ACQUIRE_TIMEOUT", c.DBAcquireTimeout), "longest wait for a database connection before a request fails with 503; negative waits for the request's deadline (env HOLDFAST_DB_ACQUIRE_TIMEOUT)")
	fs.DurationVar(&c.DBStatementTimeout, "db-statement-timeout", envDuration("HOLDFAST_DB_STATEMENT_TIMEOUT", c.DBStatementTimeout), "server-side limit on each SQL statement (env HOLDFAST_DB_STATEMENT_TIMEOUT)")
	fs.Float64Var(&c.RateLimit, "rate-limit", envFloat("HOLDFAST_RATE_LIMIT", c.RateLimit), "requests per second per API key (429 beyond); 0 is no limit (env HOLDFAST_RATE_LIMIT)")
	fs.IntVar(&c.RateLimitBurst, "rate-limit-burst", envInt("HOLDFAST_RATE_LIMIT_BURST", c.RateLimitBurst), "requests an API key may send at once after a quiet spell; 0 means the rate (env HOLDFAST_RATE_LIMIT_BURST)")
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", c.RedisURL), "Redis URL (env REDIS_URL): hold the per-key rate limit in Redis, shared by every replica; empty keeps it in this process")
	eventFlags(fs, &c.Events)
	receiptFlags(fs, &c.Receipts)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if !c.Dev && c.DatabaseURL == "" {
		return errors.New("serve needs DATABASE_URL (or --database-url); 'holdfast dev' starts a private PostgreSQL instead")
	}
	return nil
}

// Run starts everything and returns once the API is listening.
func (m *Main) Run(ctx context.Context) (err error) {
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
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	dbURL := c.DatabaseURL
	if dbURL == "" && c.Dev {
		m.Cluster, err = pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(c.DataDir, "postgres")})
		if err != nil {
			return fmt.Errorf("start private PostgreSQL: %w (install it with 'scripts/ensure-postgres.sh', or set DATABASE_URL)", err)
		}
		if err := m.Cluster.CreateDatabase(ctx, "holdfast"); err != nil {
			return err
		}
		dbURL = m.Cluster.URL("holdfast")
	}
	m.DB, err = postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: int32(c.DBMaxConns),
		AcquireTimeout: c.DBAcquireTimeout, StatementTimeout: c.DBStatementTimeout})
	if err != nil {
		return err
	}
	m.Registry.MustRegister(m.DB.Collector())
	if c.Migrate {
		if err := postgres.Migrate(ctx, m.DB); err != nil {
			return err
		}
	}

	if err := m.openNATS(ctx); err != nil {
		return err
	}

	tenants := postgres.NewTenantService(m.DB)
	transfers := postgres.NewTransferService(m.DB)
	if c.GroupCommit {
		wc := postgres.WriterConfig{MaxBatch: c.MaxBatch, Committers: c.Committers, Registerer: m.Registry}
		if c.Admission {
			wc.MaxWait = c.LedgerMaxWait
		}
		m.writer, err = postgres.NewWriter(transfers, wc)
		if err != nil {
			return err
		}
		if err := m.writer.Start(ctx); err != nil {
			return err
		}
	}
	m.reaper = postgres.NewReaper(m.DB, postgres.ReaperConfig{
		Retention: c.IdempotencyRetention, LockTimeout: c.IdempotencyLockTimeout, Logger: m.Logger})
	if err := m.reaper.Start(ctx); err != nil {
		return err
	}

	if c.Dev && c.AdminToken == "" {
		var b [16]byte
		rand.Read(b[:])
		c.AdminToken = "hfadmin_" + hex.EncodeToString(b[:])
		m.Config.AdminToken = c.AdminToken
	}
	rateLimiter, err := m.openProtection(ctx)
	if err != nil {
		return err
	}
	m.HTTP, err = holdfasthttp.NewServer(holdfasthttp.Config{
		Addr: c.Addr, AdminToken: c.AdminToken, BodyLimit: c.BodyLimit, RequestTimeout: c.RequestTimeout,
		Logger: m.Logger, Registerer: m.Registry, Gatherer: m.Registry,
		ExportSlots: c.ExportSlots, ExportSlotsPerTenant: c.ExportSlotsPerTenant,
		Admission: m.Admission, RateLimiter: rateLimiter,
	})
	if err != nil {
		return err
	}
	m.HTTP.TenantService = tenants
	m.HTTP.AccountService = postgres.NewAccountService(m.DB)
	m.HTTP.TransferService = transfers
	m.HTTP.IdempotencyService = postgres.NewIdempotencyService(m.DB, c.IdempotencyLockTimeout)
	// The export pool gets one connection per export slot (both default to 4 × GOMAXPROCS).
	m.exports, err = postgres.NewExportService(m.DB, postgres.ExportConfig{MaxConns: int32(c.ExportSlots)})
	if err != nil {
		return err
	}
	m.HTTP.ExportService = m.exports
	if err := m.openEventLog(ctx); err != nil {
		return err
	}
	if err := m.openReceipts(ctx, dbURL); err != nil {
		return err
	}
	// Ready is PostgreSQL answering: without NATS the ledger still works
	// (events wait in the outbox), so NATS goes to holdfast_nats_connected.
	m.HTTP.Ready = func(ctx context.Context) error {
		if err := m.DB.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
	if err := m.HTTP.Open(); err != nil {
		return err
	}
	m.Logger.Info("holdfast listening", "addr", m.HTTP.Addr(), "group_commit", c.GroupCommit, "embedded_nats", m.NATS.Embedded())
	if c.Dev {
		return m.printDevBanner(ctx, tenants)
	}
	return nil
}

// printDevBanner creates a demo tenant with a fresh API key and shows how to call the API.
func (m *Main) printDevBanner(ctx context.Context, tenants *postgres.TenantService) error {
	t, k, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "demo"})
	if err != nil {
		return fmt.Errorf("demo tenant: %w", err)
	}
	u := m.HTTP.URL()
	fmt.Fprintf(m.Stdout, `
Holdfast is running at %[1]s  (Ctrl-C to stop)
  demo tenant:  %[2]s
  API key:      %[3]s
  admin token:  %[4]s

Try it:
  export KEY=%[3]s
  curl -s -X POST %[1]s/v1/accounts -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
       -d '{"currency":"USD","allow_overdraft":true}'
  curl -s %[1]s/v1/accounts -H "Authorization: Bearer $KEY"
  curl -s %[1]s/openapi.json | head
  curl -s %[1]s/metrics | grep holdfast_

`, u, t.ID, k.Secret, m.Config.AdminToken)
	return nil
}

// Close shuts down in reverse order of start: stop accepting and drain
// requests, stop the writer and reaper, close NATS, the pool, the cluster.
func (m *Main) Close() error {
	var errs []error
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
		errs = append(errs, m.HTTP.Close(ctx))
		cancel()
	}
	if m.exports != nil {
		m.exports.Close()
	}
	m.closeReceipts()
	m.closeEventLog()
	if m.reaper != nil {
		m.reaper.Stop()
	}
	if m.writer != nil {
		m.writer.Stop()
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
	return errors.Join(errs...)
}

func runMigrate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: holdfast migrate [flags]\n\nApply the database migrations that have not run yet, then exit.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("migrate needs DATABASE_URL (or --database-url)")
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: *url})
	if err != nil {
		return err
	}
	defer db.Close()
	return postgres.Migrate(ctx, db)
}
