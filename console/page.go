package console

import (
	"context"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// page is one page of the console.
type page struct {
	Path  string // "/console/events/": the page is served at Path exactly
	Title string // in the navigation bar
	// Template is the page's file under templates/. It defines "content",
	// the page, and may define "live", the part the page's script reloads
	// every few seconds (the page is fetched with ?live=1 for it).
	Template string
	// Data returns what the template is given as .Data.
	Data func(r *http.Request) (any, error)
	// Actions are the page's POST routes, by pattern: each runs with a
	// valid session and CSRF token, then the browser goes back to Path.
	Actions map[string]func(r *http.Request) error
	// Gets are further GET routes of the page (an image, a sub-page).
	Gets map[string]http.Handler
	// sub are the page's sub-pages served by Gets, whose templates are
	// parsed with the page's.
	sub []*page
}

// registry returns the console's pages in the navigation's order. A page
// is added by a file returning a *page and a line here.
func (c *Console) registry() []*page {
	all := []*page{c.overviewPage(), c.eventLogPage(), c.receiptsPage(), c.webhooksPage(), c.tenantsPage(), c.labPage()}
	var pages []*page
	for _, p := range all {
		if p != nil {
			pages = append(pages, p)
		}
	}
	return pages
}

func parseTemplates(pages []*page) (map[string]*template.Template, error) {
	funcs := template.FuncMap{"since": since, "percent": percent, "number": number, "recoverSince": recoverSince}
	base, err := template.New("layout").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	names := map[string]string{"login": "login.html", "error": "error.html"}
	for _, p := range pages {
		names[p.Path] = p.Template
		for _, sp := range p.sub {
			names[sp.Path] = sp.Template
		}
	}
	for name, file := range names {
		t, err := template.Must(base.Clone()).ParseFS(files, "templates/"+file)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// pageHandler renders a page, or only its live part with ?live=1, and
// records the time it took.
func (c *Console) pageHandler(p *page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() { c.render.WithLabelValues(p.Title).Observe(time.Since(start).Seconds()) }()
		data, err := p.Data(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		vars := map[string]any{"Title": p.Title, "Data": data}
		if r.URL.Query().Get("live") == "1" {
			vars["Pages"], vars["Path"] = c.pages, r.URL.Path
			if s, ok := c.sessionOf(r); ok {
				vars["CSRF"] = c.csrfToken(s)
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := c.tmpl[p.Path].ExecuteTemplate(w, "live", vars); err != nil {
				c.cfg.Logger.Error("console render", "page", p.Title, "err", err)
			}
			return
		}
		c.writePage(w, r, http.StatusOK, p.Path, vars)
	})
}

// cached keeps what load returned for ttl: however many operators watch,
// the source is asked at most once per ttl, and a slow source is asked by
// one of them while the others wait for its answer.
type cached[T any] struct {
	ttl  time.Duration
	load func(ctx context.Context) (T, error)

	mu  sync.Mutex
	at  time.Time
	val T
	err error
}

// get returns the value at most ttl old, loading it if it is older.
func (c *cached[T]) get(ctx context.Context) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.ttl {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c.val, c.err = c.load(ctx)
		cancel()
		c.at = time.Now()
	}
	return c.val, c.err
}

// invalidate makes the next get load again (after an action changed what
// the value shows).
func (c *cached[T]) invalidate() {
	c.mu.Lock()
	c.at = time.Time{}
	c.mu.Unlock()
}

// since says how long ago t was, in a word and a number.
func since(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// percent formats a fraction a/b as a percentage.
func percent(a, b float64) string {
	if b <= 0 {
		return "—"
	}
	return number(100*a/b) + "%"
}

// number formats a figure with one decimal below 100 and none above,
// without a trailing ".0"; "—" when unknown.
func number(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
}
