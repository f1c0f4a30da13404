package http_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	holdfasthttp "github.com/holdfast/holdfast/http"
)

// overlapGatherer records how many gathers run at once. Each gather takes
// a little while, so that scrapes that are let through together overlap.
type overlapGatherer struct {
	running, most, total atomic.Int64
}

func (g *overlapGatherer) Gather() ([]*dto.MetricFamily, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	g.total.Add(1)
	time.Sleep(20 * time.Millisecond)
	return prometheus.NewRegistry().Gather()
}

// TestMetrics_OneScrapeAtATime: concurrent scrapes of /metrics gather one
// at a time; a scrape that cannot have its turn soon gets 503 overloaded
// (a problem with Retry-After) instead of piling on.
func TestMetrics_OneScrapeAtATime(t *testing.T) {
	t.Parallel()
	g := &overlapGatherer{}
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.Gatherer = g })
	anon := &Client{URL: s.URL()}

	const scrapes = 16
	var wg sync.WaitGroup
	responses := make([]*Response, scrapes)
	for i := range scrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := anon.Send(context.Background(), "GET", "/metrics", nil)
			if err != nil {
				t.Error(err)
				r = &Response{}
			}
			responses[i] = r
		}()
	}
	wg.Wait()
	served := 0
	spec := loadOpenAPI(t)
	for _, r := range responses {
		spec.checkResponse(t, "GET", "/metrics", r)
		switch r.Status {
		case 200:
			served++
		case 503:
			mustProblem(t, r, 503, "overloaded")
			if r.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		default:
			t.Errorf("scrape: status %d: %s", r.Status, r.Body)
		}
	}
	if most := g.most.Load(); most != 1 {
		t.Fatalf("%d gathers ran at once for %d concurrent scrapes, want 1", most, scrapes)
	}
	if served == 0 || int64(served) != g.total.Load() {
		t.Fatalf("%d scrapes served, %d gathers: want at least one, and one gather per scrape served", served, g.total.Load())
	}
}

// TestMetrics_OwnListener: with MetricsAddr, /metrics is served there and
// only there; the API's listener answers it 404 like any unknown route.
func TestMetrics_OwnListener(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.MetricsAddr = "127.0.0.1:0" })
	if s.MetricsAddr() == "" || s.MetricsAddr() == s.Addr() {
		t.Fatalf("metrics address %q beside the API's %q", s.MetricsAddr(), s.Addr())
	}
	mustProblem(t, (&Client{URL: s.URL()}).Do(t, "GET", "/metrics", nil), 404, notFound)
	metrics := &Client{URL: "http://" + s.MetricsAddr()}
	r := metrics.Do(t, "GET", "/metrics", nil).MustStatus(t, 200)
	if !strings.Contains(string(r.Body), "go_goroutines") {
		t.Fatalf("/metrics on its own listener lacks the default gatherer's metrics: %.200s", r.Body)
	}
	mustProblem(t, metrics.Do(t, "GET", "/v1/accounts", nil), 404, notFound)
	mustProblem(t, metrics.Do(t, "GET", "/healthz", nil), 404, notFound)
}

// blockingGatherer holds each gather until released.
type blockingGatherer struct {
	entered chan struct{}
	release chan struct{}
}

func (g *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.entered <- struct{}{}
	<-g.release
	return prometheus.NewRegistry().Gather()
}

// TestMetrics_AScrapeBehindAStuckOneIsRefused: while a gather is stuck, a
// second scrape does not gather beside it: it waits its turn briefly and
// then gets 503 overloaded with Retry-After, as documented.
func TestMetrics_AScrapeBehindAStuckOneIsRefused(t *testing.T) {
	t.Parallel()
	g := &blockingGatherer{entered: make(chan struct{}, 2), release: make(chan struct{})}
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.Gatherer = g })
	anon := &Client{URL: s.URL()}
	first := make(chan *Response)
	go func() {
		r, err := anon.Send(context.Background(), "GET", "/metrics", nil)
		if err != nil {
			t.Error(err)
			r = &Response{}
		}
		first <- r
	}()
	<-g.entered

	r := anon.Do(t, "GET", "/metrics", nil)
	mustProblem(t, r, 503, "overloaded")
	loadOpenAPI(t).checkResponse(t, "GET", "/metrics", r)
	if len(g.entered) != 0 {
		t.Fatal("the second scrape gathered beside the stuck one")
	}
	close(g.release)
	(<-first).MustStatus(t, 200)
}
