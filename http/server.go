// Package http is Holdfast's HTTP API: JSON under /v1, errors as
// application/problem+json, Idempotency-Key on every POST, /healthz,
// /readyz, /metrics and /openapi.json. Import it as holdfasthttp.
package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/export"
	"github.com/holdfast/holdfast/overload"
)

// Config configures the HTTP server.
type Config struct {
	// Addr is the listen address. Default ":8080"; ":0" picks a free port.
	Addr string
	// MetricsAddr, if set, serves /metrics on a listener of its own (an
	// address operators can keep private) and not on Addr. Default "":
	// /metrics is served on Addr.
	MetricsAddr string
	// AdminToken guards /v1/admin: at least MinAdminTokenLen characters
	// (NewServer refuses a shorter one). Empty disables the admin API.
	AdminToken string
	// BodyLimit caps every request body, in bytes. Default 1 MiB.
	BodyLimit int64
	// RequestTimeout is the deadline of every request that sets none. Default 30s.
	RequestTimeout time.Duration
	// ReadHeaderTimeout bounds reading request headers (slowloris). Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request. Default 30s.
	ReadTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// AuthCacheTTL is how long a verified API key is trusted without asking
	// the database again; a revocation takes effect in other replicas within
	// it (at once in the replica that revoked). Default 5s; negative disables.
	AuthCacheTTL time.Duration
	// AuthFailureBurst is how many failed authentications (API key or
	// admin token) one client address may make before it is throttled:
	// 429 authentication-throttled, without a database lookup. Default 20.
	AuthFailureBurst int
	// AuthFailureRate is how many failed authentications per second an
	// address earns back. Default 1.
	AuthFailureRate float64
	// AuthFailureAddrs bounds the addresses the throttle remembers; past
	// it the one that failed least recently is forgotten. Default 10,000.
	AuthFailureAddrs int
	// ExportSlots caps concurrent exports in this process; beyond it an
	// export gets 429 at once. Default 4 × GOMAXPROCS.
	ExportSlots int
	// ExportSlotsPerTenant caps one tenant's concurrent exports. Default 2.
	ExportSlotsPerTenant int
	// ExportStallTimeout cuts an export off when the client accepts no data
	// for this long (a rolling write deadline). Default 30s.
	ExportStallTimeout time.Duration
	// Admission is the adaptive admission control of /v1 tenant routes, by
	// route class; nil admits everything (and drops no expired request).
	// Admin routes, /healthz, /readyz, /metrics and /openapi.json never go
	// through it.
	Admission *overload.Admission
	// RateLimiter limits each tenant's requests, all its keys together
	// (429); nil: no limit.
	RateLimiter RateLimiter
	// EventQuota, if set, is each tenant's quota of client events and
	// their bytes on POST /v1/events (429 beyond); nil: no quota.
	EventQuota EventQuota
	// EventBodyLimit caps the body of POST /v1/events (a batch of up to
	// 1,000 events). Default 4 MiB.
	EventBodyLimit int64
	// ReceiptBodyLimit caps a receipt upload. Default 10 MiB (media's limit).
	ReceiptBodyLimit int64
	// Logger receives request logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the HTTP metrics. Default: none registered.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics. Default: prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = 1 << 20
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.AuthCacheTTL == 0 {
		c.AuthCacheTTL = 5 * time.Second
	}
	if c.AuthFailureBurst == 0 {
		c.AuthFailureBurst = 20
	}
	if c.AuthFailureRate == 0 {
		c.AuthFailureRate = 1
	}
	if c.AuthFailureAddrs == 0 {
		c.AuthFailureAddrs = 10_000
	}
	if c.ExportSlots == 0 {
		c.ExportSlots = 4 * runtime.GOMAXPROCS(0)
	}
	if c.ExportSlotsPerTenant == 0 {
		c.ExportSlotsPerTenant = 2
	}
	if c.ExportStallTimeout == 0 {
		c.ExportStallTimeout = 30 * time.Second
	}
	if c.EventBodyLimit == 0 {
		c.EventBodyLimit = 4 << 20
	}
	if c.ReceiptBodyLimit == 0 {
		c.ReceiptBodyLimit = 10 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	return c
}

// MinAdminTokenLen is the shortest admin token NewServer accepts: a
// shorter one could be guessed, throttle or not.
const MinAdminTokenLen = 32

func (c Config) validate() error {
	if n := utf8.RuneCountInString(c.AdminToken); n > 0 && n < MinAdminTokenLen {
		return fmt.Errorf("http: the admin token has %d characters; it needs at least %d (generate one with 'openssl rand -hex 32'), or none to disable the admin API", n, MinAdminTokenLen)
	}
	if c.BodyLimit < 1 || c.RequestTimeout <= 0 {
		return errors.New("http: BodyLimit and RequestTimeout must be positive")
	}
	if c.AuthFailureBurst < 1 || !(c.AuthFailureRate > 0) || c.AuthFailureAddrs < 1 {
		return errors.New("http: AuthFailureBurst, AuthFailureRate and AuthFailureAddrs must be positive")
	}
	if c.ExportSlots < 1 || c.ExportSlotsPerTenant < 1 || c.ExportStallTimeout <= 0 {
		return errors.New("http: ExportSlots, ExportSlotsPerTenant and ExportStallTimeout must be positive")
	}
	return nil
}

// Server serves the API. Set the services, then Open.
type Server struct {
	TenantService      holdfast.TenantService
	AccountService     holdfast.AccountService
	BalanceService     holdfast.BalanceService
	TransferService    holdfast.TransferService
	IdempotencyService holdfast.IdempotencyService
	ExportService      ExportService
	EventService       holdfast.EventService
	AnalyticsService   holdfast.AnalyticsService
	AuditService       holdfast.AuditService
	ConsumerService    holdfast.ConsumerService
	ReceiptService     holdfast.ReceiptService
	DeadLetterService  holdfast.DeadLetterService
	// WebhookService serves /v1/webhook-endpoints; nil answers 501
	// webhooks-not-configured.
	WebhookService holdfast.WebhookService
	// Ready reports whether the dependencies answer; /readyz calls it.
	Ready func(ctx context.Context) error
	// Console, if set, serves /console and everything under it (package
	// console): it authenticates its own requests.
	Console http.Handler

	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	server  *http.Server
	ln      net.Listener
	// metricsServer and metricsLn serve /metrics when MetricsAddr is set.
	metricsServer *http.Server
	metricsLn     net.Listener
	draining      atomic.Bool
	auth          authCache
	// authThrottle counts failed authentications per client address.
	authThrottle *authThrottle
	handler      http.Handler
	once         sync.Once

	// exportSlots and exportMetrics serve the streaming exports.
	exportSlots   *export.Limiter
	exportMetrics *exportMetrics

	// admissionMetrics and rateLimitPolicy serve overload protection.
	admissionMetrics *admissionMetrics
	rateLimitPolicy  string
}

// NewServer returns a server; it does not listen until Open.
func NewServer(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: cfg.Logger}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.exportSlots = export.NewLimiter(cfg.ExportSlots, cfg.ExportSlotsPerTenant)
	if s.exportMetrics, err = newExportMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	s.auth.ttl = cfg.AuthCacheTTL
	s.authThrottle = newAuthThrottle(cfg.AuthFailureBurst, cfg.AuthFailureRate, cfg.AuthFailureAddrs)
	if s.admissionMetrics, err = newAdmissionMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if cfg.RateLimiter != nil {
		s.rateLimitPolicy = rateLimitPolicyHeader(cfg.RateLimiter.Policy())
	}
	return s, nil
}

// Handler returns the server's root handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	s.once.Do(func() { s.handler = s.routes() })
	return s.handler
}

// Open listens on the configured address (and MetricsAddr, if set) and
// serves in the background.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http: listen: %w", err)
	}
	var metricsLn net.Listener
	if s.cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("http: listen for metrics: %w", err)
		}
	}
	s.ln, s.server = ln, s.newHTTPServer(s.Handler())
	s.serve(s.server, ln)
	if metricsLn != nil {
		s.metricsLn, s.metricsServer = metricsLn, s.newHTTPServer(s.metricsRoutes())
		s.serve(s.metricsServer, metricsLn)
	}
	return nil
}

// maxHeaderBytes caps a request's header (431 headers-too-large beyond).
const maxHeaderBytes = 64 << 10

// newHTTPServer returns a server of h whose connections (from serve's
// problemListener) answer what net/http refuses itself with problems.
func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           markHandling(h),
		ConnContext:       connContext,
		ConnState:         connState,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	go func() {
		if err := srv.Serve(problemListener{ln, s}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// Addr returns the address the server listens on (useful with ":0").
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// MetricsAddr returns the address /metrics is served on when
// Config.MetricsAddr is set; "" otherwise (it is then on Addr).
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// URL returns the server's base URL on loopback.
func (s *Server) URL() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return "http://127.0.0.1:" + port
}

// Drain makes /readyz fail, so a load balancer stops sending new work.
func (s *Server) Drain() { s.draining.Store(true) }

// Close drains: it stops accepting connections and waits for in-flight
// requests until ctx ends, then closes what is left.
func (s *Server) Close(ctx context.Context) error {
	s.Drain()
	var errs []error
	for _, srv := range []*http.Server{s.server, s.metricsServer} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// Each chain takes the route's query parameters: any other is refused
	// with 400 before anything else (see knownQuery).
	//
	// Overload protection: a request whose deadline has passed is dropped
	// first; tenant routes then authenticate (a database lookup only for a
	// key not in the cache, admitted by its own class, see requireTenant)
	// and pass the tenant's rate limit and their class's admission limit.
	// Admin routes skip both, so that operators can act during an overload;
	// failed authentications of either are throttled per client address.
	//
	// A POST handler answers its Idempotency-Key itself, through the view
	// of its write (see idempotent and idempotentInWrite).
	system := func(h http.HandlerFunc, query ...string) http.Handler { return s.knownQuery(h, query) }
	metrics := s.apiMetricsHandler()
	admin := func(h http.HandlerFunc, query ...string) http.Handler {
		return s.knownQuery(s.dropExpired(s.requireAdmin(h)), query)
	}
	tenant := func(h http.HandlerFunc, query ...string) http.Handler {
		return s.knownQuery(s.dropExpired(s.requireTenant(s.protect(h))), query)
	}

	mux.Handle("GET /healthz", system(s.handleHealthz))
	mux.Handle("GET /readyz", system(s.handleReadyz))
	mux.Handle("GET /metrics", system(metrics.ServeHTTP))
	mux.Handle("GET /openapi.json", system(s.handleOpenAPI))

	mux.Handle("POST /v1/admin/tenants", admin(s.handleCreateTenant))
	mux.Handle("POST /v1/api-keys", tenant(s.handleCreateAPIKey))
	mux.Handle("GET /v1/api-keys", tenant(s.handleListAPIKeys, "limit", "cursor"))
	mux.Handle("DELETE /v1/api-keys/{id}", tenant(s.handleRevokeAPIKey))

	mux.Handle("POST /v1/accounts", tenant(s.handleCreateAccount))
	mux.Handle("GET /v1/accounts", tenant(s.handleListAccounts, "limit", "cursor"))
	mux.Handle("GET /v1/accounts/{id}", tenant(s.handleGetAccount))
	mux.Handle("PATCH /v1/accounts/{id}", tenant(s.handlePatchAccount))
	mux.Handle("GET /v1/accounts/{id}/transfers", tenant(s.handleListTransfers, "limit", "cursor"))
	mux.Handle("GET /v1/accounts/{id}/balance", tenant(s.handleBalanceAt, "at"))
	mux.Handle("GET /v1/accounts/{id}/balances", tenant(s.handleBalanceHistory, "from", "to", "interval"))
	// Streaming: no request deadline (see exportPath).
	mux.Handle("GET /v1/accounts/{id}/transactions.csv", tenant(s.handleExportCSV, "from", "to", "after"))
	mux.Handle("GET /v1/accounts/{id}/transactions.ndjson", tenant(s.handleExportNDJSON, "from", "to", "after"))

	mux.Handle("POST /v1/transfers", tenant(s.handleCreateTransfer))
	mux.Handle("GET /v1/transfers", tenant(s.handleSearchTransfers, "limit", "cursor", "account_id", "status", "created[gte]", "created[lt]", "amount[gte]", "amount[lte]", "metadata[*]"))
	mux.Handle("GET /v1/transfers/{id}", tenant(s.handleGetTransfer))
	mux.Handle("PATCH /v1/transfers/{id}", tenant(s.handlePatchTransfer))
	mux.Handle("POST /v1/transfers/{id}/post", tenant(s.handlePostTransfer))
	mux.Handle("POST /v1/transfers/{id}/void", tenant(s.handleVoidTransfer))
	mux.Handle("POST /v1/linked-transfers", tenant(s.handleCreateLinkedTransfers))

	mux.Handle("POST /v1/events", tenant(s.handlePostEvents))
	mux.Handle("GET /v1/analytics/rollups", tenant(s.handleListRollups, "from", "to", "type", "limit"))
	mux.Handle("GET /v1/audit", tenant(s.handleListAudit, "limit", "cursor"))
	mux.Handle("GET /v1/audit/verify", tenant(s.handleVerifyAudit, "from", "limit", "cursor"))
	mux.Handle("PUT /v1/transfers/{id}/receipt", tenant(s.handlePutReceipt))
	mux.Handle("GET /v1/receipts/{id}", tenant(s.handleGetReceipt))
	mux.Handle("GET /v1/receipts/{id}/{variant}", tenant(s.handleGetReceiptVariant))
	mux.Handle("POST /v1/webhook-endpoints", tenant(s.handleCreateWebhookEndpoint))
	mux.Handle("GET /v1/webhook-endpoints", tenant(s.handleListWebhookEndpoints, "limit", "cursor"))
	mux.Handle("GET /v1/webhook-endpoints/{id}", tenant(s.handleGetWebhookEndpoint))
	mux.Handle("PATCH /v1/webhook-endpoints/{id}", tenant(s.handleUpdateWebhookEndpoint))
	mux.Handle("DELETE /v1/webhook-endpoints/{id}", tenant(s.handleDeleteWebhookEndpoint))
	mux.Handle("POST /v1/webhook-endpoints/{id}/rotate-secret", tenant(s.handleRotateWebhookSecret))
	mux.Handle("GET /v1/webhook-endpoints/{id}/attempts", tenant(s.handleListWebhookAttempts, "limit", "cursor"))
	mux.Handle("POST /v1/webhook-endpoints/{id}/messages/{message_id}/replay", tenant(s.handleReplayWebhookMessage))
	mux.Handle("POST /v1/webhook-endpoints/{id}/recover", tenant(s.handleRecoverWebhookMessages))
	mux.Handle("GET /v1/admin/dead-letters", admin(s.handleListDeadLetters, "tenant", "limit", "cursor"))
	mux.Handle("POST /v1/admin/dead-letters/{id}/redrive", admin(s.handleRedrive))
	mux.Handle("GET /v1/admin/consumers", admin(s.handleListConsumers))
	mux.Handle("POST /v1/admin/consumers/{name}/pause", admin(s.handlePauseConsumer))
	mux.Handle("POST /v1/admin/consumers/{name}/resume", admin(s.handleResumeConsumer))
	if s.Console != nil {
		mux.Handle("/console", s.dropExpired(s.Console))
		mux.Handle("/console/", s.dropExpired(s.Console))
	}

	return s.observe(mux)
}
