// Package console is Holdfast's operator console, served by every replica
// under /console: server-rendered pages (html/template) with a little
// vanilla JavaScript for live charts, everything embedded in the binary.
// Access is by the admin token, exchanged at a login form for a signed,
// HttpOnly, SameSite=Strict session cookie; every action is a POST that
// carries a CSRF token.
//
// Each page is one file (overview.go, eventlog.go, …) that returns a page
// for the registry in pages(): its path, title, template, data and actions.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

//go:embed templates/*.html static/*
var files embed.FS

// Config configures the console.
type Config struct {
	// AdminToken is the token operators log in with; sessions are signed
	// with a key derived from it, so every replica with the same token
	// accepts every replica's sessions. Required.
	AdminToken string
	// CheckToken checks a login's token (with the API's throttle of failed
	// authentications); nil compares it with AdminToken alone.
	CheckToken func(r *http.Request, token string) error
	// Live gathers the process's in-process metrics, sampled into the
	// overview's ring: it must hold no collector that calls PostgreSQL or
	// NATS. Required.
	Live prometheus.Gatherer
	// Gatherer gathers every metric, those read from PostgreSQL and NATS
	// (cached) included: the figures of the event log and receipt pages.
	// Default: Live.
	Gatherer prometheus.Gatherer
	// Consumers shows and steers the consumer groups; nil hides them.
	Consumers holdfast.ConsumerService
	// Outbox reads the outbox's depth and age per topic; nil hides it.
	Outbox OutboxReader
	// DeadLetters lists and redrives the receipt pipeline's dead letters;
	// nil hides them.
	DeadLetters holdfast.DeadLetterService
	// Webhooks lists failing endpoints across tenants and recovers or
	// enables them; nil hides the page (a server without webhooks).
	Webhooks WebhookReader
	// Tenants lists tenants and their keys; nil hides the page.
	Tenants TenantReader
	// LabDir is where `holdfast-lab lab --out` wrote its reports; "" or a
	// missing directory shows none.
	LabDir string
	// Interval is how often the overview's ring is sampled. Default 1s.
	Interval time.Duration
	// Window is how far back the overview's charts go. Default 15m.
	Window time.Duration
	// CacheTTL is how long a page's data read from PostgreSQL or NATS is
	// reused, whatever the number of operators watching. Default 2s.
	CacheTTL time.Duration
	// Registerer receives the console's own metrics. Default: none.
	Registerer prometheus.Registerer
	// Logger receives the errors of page data. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Gatherer == nil {
		c.Gatherer = c.Live
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Window == 0 {
		c.Window = 15 * time.Minute
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.AdminToken == "" {
		return errors.New("console: an admin token is required")
	}
	if c.Live == nil {
		return errors.New("console: Live is required")
	}
	if c.Interval <= 0 || c.Window < c.Interval || c.CacheTTL < 0 {
		return errors.New("console: Interval and Window must be positive, Window at least Interval")
	}
	return nil
}

// maxSeries bounds the series the ring keeps (each chart's lines).
const maxSeries = 48

// Console serves /console. Start samples the overview's metrics; Stop ends it.
type Console struct {
	cfg     Config
	key     []byte // signs sessions and CSRF tokens
	ring    *Ring
	sampler *Sampler
	pages   []*page
	tmpl    map[string]*template.Template // by page path, and "login"
	handler http.Handler
	render  *prometheus.HistogramVec
	figures cached[families]
}

// New returns the console; it does not sample until Start.
func New(cfg Config) (*Console, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, ring: NewRing(int(cfg.Window/cfg.Interval), maxSeries)}
	mac := hmac.New(sha256.New, []byte(cfg.AdminToken))
	mac.Write([]byte("holdfast console session key"))
	c.key = mac.Sum(nil)
	c.sampler = NewSampler(cfg.Live, c.ring, cfg.Interval)
	c.render = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "holdfast_console_render_seconds", Help: "Server time to render a console page, by page.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}, []string{"page"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.render); err != nil {
			return nil, err
		}
	}
	c.figures = cached[families]{ttl: cfg.CacheTTL, load: func(context.Context) (families, error) {
		fams, err := cfg.Gatherer.Gather()
		return indexFamilies(fams), err
	}}
	c.pages = c.registry()
	var err error
	if c.tmpl, err = parseTemplates(c.pages); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

// Start samples the overview's metrics in the background until Stop.
func (c *Console) Start(ctx context.Context) { c.sampler.Start(ctx) }

// Stop stops sampling; safe before Start and more than once.
func (c *Console) Stop() { c.sampler.Stop() }

// Ring returns the ring of the overview's samples.
func (c *Console) Ring() *Ring { return c.ring }

// ServeHTTP serves the console's routes, all under /console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	c.handler.ServeHTTP(w, r)
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /console/login", c.handleLoginForm)
	mux.HandleFunc("POST /console/login", c.handleLogin)
	mux.Handle("POST /console/logout", c.action(c.handleLogout))
	mux.Handle("GET /console/static/", http.StripPrefix("/console/", http.FileServerFS(files)))
	mux.Handle("GET /console/api/series", c.session(http.HandlerFunc(c.handleSeries)))
	for _, p := range c.pages {
		mux.Handle("GET "+p.Path+"{$}", c.session(c.pageHandler(p)))
		for pattern, a := range p.Actions {
			mux.Handle("POST "+pattern, c.action(func(_ http.ResponseWriter, r *http.Request) error { return a(r) }))
		}
		for pattern, h := range p.Gets {
			mux.Handle("GET "+pattern, c.session(h))
		}
	}
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, holdfast.Errorf(holdfast.ENOTFOUND, "no such page"))
	})
	return mux
}

// fail answers an error as an HTML page with the status of its code.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	msg := "internal error; see the server's log"
	switch holdfast.ErrorCode(err) {
	case holdfast.ENOTFOUND:
		status, msg = http.StatusNotFound, holdfast.ErrorMessage(err)
	case holdfast.EINVALID:
		status, msg = http.StatusBadRequest, holdfast.ErrorMessage(err)
	case holdfast.EUNAUTHORIZED:
		status, msg = http.StatusUnauthorized, holdfast.ErrorMessage(err)
	case holdfast.EOVERLOADED, holdfast.EUNAVAILABLE:
		status, msg = http.StatusServiceUnavailable, holdfast.ErrorMessage(err)
	default:
		c.cfg.Logger.Error("console", "path", r.URL.Path, "err", err)
	}
	c.writePage(w, r, status, "error", map[string]any{"Status": status, "Message": msg})
}

// writePage renders a template of the console's into w with status.
func (c *Console) writePage(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	t := c.tmpl[name]
	if t == nil {
		http.Error(w, fmt.Sprintf("no template %q", name), http.StatusInternalServerError)
		return
	}
	data["Pages"] = c.pages
	data["Path"] = r.URL.Path
	if s, ok := c.sessionOf(r); ok {
		data["CSRF"] = c.csrfToken(s)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout", data); err != nil {
		c.cfg.Logger.Error("console render", "template", name, "err", err)
	}
}
