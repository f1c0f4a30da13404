package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/webhooks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// browser is one headless Chromium, shared by the subtests of a test.
type browser struct {
	ctx  context.Context
	base string
}

// mustBrowser starts Debian's chromium (scripts/ensure-apt.sh installs
// it; make test runs that), headless with a fresh profile, and stops it
// when t ends. The flags keep it off the network: without them it waits
// on background requests a closed network never answers.
func mustBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium in PATH; install it with scripts/ensure-apt.sh chromium chromium (make test does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{ctx: ctx, base: base}
}

// do runs steps, failing t if they do not finish within 60 s.
func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// click clicks the element selector finds, in the page itself: the live
// part of a page is replaced every 2 s, so a node found by one call of the
// protocol may be gone by the next.
func (b *browser) click(t *testing.T, selector string) {
	t.Helper()
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, selector)
	for deadline := time.Now().Add(60 * time.Second); !eval[bool](t, b, expr); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s to click", selector)
		}
	}
}

// eval returns a JavaScript expression's value.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript predicate holds, failing t with what
// after 60 s. A navigation meanwhile (a form posted) starts the wait again
// on the new page.
func (b *browser) waitFor(t *testing.T, what, predicate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
		if err == nil {
			return
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "(-32000)") { // -32000: the page went away meanwhile
			body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("'hidden=' + document.hidden + ' active=' + (document.activeElement && document.activeElement.tagName) + '\\n' + (document.querySelector('main') ? document.querySelector('main').innerText : '')"))
			t.Fatalf("waiting until %s: %v; the page shows:\n%s", what, err, body)
		}
	}
}

// screenshot saves the page as name.png in the test's artifact directory
// (go test -artifacts -outputdir DIR keeps them).
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The console in a real browser: a wrong token is refused, the right one
// logs in, the overview's charts draw the traffic, a consumer group paused
// from the event log lags and drains once resumed, a dead letter is
// redriven from the receipts page; each page is screenshotted.
func TestConsole_InABrowser(t *testing.T) {
	m := apptest.MustStart(t, pgtest.NewDatabase(t), func(c *app.Config) {
		c.Webhooks.SecretKey, c.Webhooks.AllowPrivate, c.Webhooks.ScheduleScale = webhooks.NewKey(), true, 0.001
	})
	mustLabReport(t, m)
	c := apptest.Admin(m).MustTenant(t, "browser")
	from, to := c.MustAccount(t, "EUR", true), c.MustAccount(t, "EUR", false)
	b := mustBrowser(t, m.HTTP.URL())

	t.Run("a wrong token is refused", func(t *testing.T) {
		b.do(t, chromedp.Navigate(b.base+"/console/"), chromedp.WaitVisible("#token"),
			chromedp.SendKeys("#token", "not-the-admin-token-0123456789abcdef"), chromedp.Submit("#token"),
			chromedp.WaitVisible(".error"))
		if got := eval[string](t, b, "document.querySelector('.error').textContent"); !strings.Contains(got, "wrong token") {
			t.Fatalf("refusal says %q", got)
		}
		if got := eval[string](t, b, "location.pathname"); got != "/console/login" {
			t.Fatalf("after a wrong token the browser is at %s", got)
		}
		b.screenshot(t, "login")
		resp := (&apitest.Client{URL: b.base}).Do(t, "GET", "/console/api/series", nil)
		if resp.Status != 401 {
			t.Fatalf("series without a session: %d", resp.Status)
		}
	})

	t.Run("log in and watch the charts", func(t *testing.T) {
		stop := makeTraffic(c, from, to, 0)
		defer stop()
		b.do(t, chromedp.Navigate(b.base+"/console/login"), chromedp.WaitVisible("#token"),
			chromedp.SendKeys("#token", apptest.AdminToken), chromedp.Submit("#token"), chromedp.WaitVisible("#charts"))
		b.waitFor(t, "the requests chart shows traffic",
			`(() => { const v = document.querySelector('[data-chart=requests] li[data-series=all] b');
			   return !!v && parseFloat(v.textContent) > 0 &&
			     document.querySelector('[data-chart=requests] polyline[data-series=all]').getAttribute('points').trim().split(' ').length >= 3 })()`)
		b.waitFor(t, "the batch and pool charts have numbers",
			`['batch', 'pool', 'limits', 'latency'].every(id => [...document.querySelectorAll('[data-chart='+id+'] li b')].some(b => b.textContent !== '—'))`)
		b.screenshot(t, "overview")
	})

	t.Run("pause a group, watch it lag, resume, watch it drain", func(t *testing.T) {
		b.do(t, chromedp.Navigate(b.base+"/console/events/"), chromedp.WaitVisible(`tr[data-group="analytics"]`))
		b.click(t, `tr[data-group="analytics"] button[data-action="pause"]`)
		b.do(t, chromedp.WaitVisible(`tr[data-group="analytics"] button[data-action="resume"]`))
		// A fetch the group began before the pause still delivers what
		// arrives within its wait, so a trickle of transfers goes on until
		// the lag has grown twice.
		stop := makeTraffic(c, from, to, 100*time.Millisecond)
		lag := `parseInt(document.querySelector('tr[data-group="analytics"] [data-field=lag]').textContent)`
		b.waitFor(t, "the paused group lags", lag+" >= 1")
		first := eval[int](t, b, lag)
		b.waitFor(t, "its lag grows", fmt.Sprintf("%s > %d", lag, first))
		stop()
		if got := eval[string](t, b, `document.querySelector('tr[data-group="analytics"] [data-field=state]').textContent`); !strings.Contains(got, "paused") {
			t.Fatalf("state while paused: %q", got)
		}
		b.screenshot(t, "events")
		b.click(t, `tr[data-group="analytics"] button[data-action="resume"]`)
		b.do(t, chromedp.WaitVisible(`tr[data-group="analytics"] button[data-action="pause"]`))
		b.waitFor(t, "the resumed group drains", lag+" === 0")
	})

	t.Run("redrive a dead letter", func(t *testing.T) {
		tr := c.Do(t, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "EUR")).MustStatus(t, 201).JSON(t)["id"].(string)
		good := media.Generate(300, 200, 9)
		receipt := c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", good[:len(good)*2/3]).MustStatus(t, 202).JSON(t)["id"].(string)
		row := `[...document.querySelectorAll('tr[data-dead-letter]')].find(r => r.textContent.includes('` + receipt + `'))`
		b.do(t, chromedp.Navigate(b.base+"/console/receipts/"))
		b.waitFor(t, "the poisoned receipt's dead letter is listed", "!!"+row)
		id := eval[string](t, b, row+".dataset.deadLetter")
		b.screenshot(t, "receipts")
		b.click(t, `tr[data-dead-letter="`+id+`"] button[data-action="redrive"]`)
		b.waitFor(t, "the redriven dead letter leaves the list", `location.pathname === '/console/receipts/' && !document.querySelector('tr[data-dead-letter="`+id+`"]')`)
		list := apptest.Admin(m).Do(t, "GET", "/v1/admin/dead-letters?tenant="+c.Tenant, nil).MustStatus(t, 200).JSON(t)["data"].([]any)
		for _, d := range list {
			if d.(map[string]any)["id"] == id {
				t.Fatalf("dead letter %s is still open after its redrive", id)
			}
		}
	})

	t.Run("a failing webhook endpoint, recovered and enabled", func(t *testing.T) {
		var healthy atomic.Bool
		rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !healthy.Load() {
				w.WriteHeader(500)
			}
		}))
		defer rcv.Close()
		ep := c.Do(t, "POST", "/v1/webhook-endpoints", map[string]any{"url": rcv.URL, "event_types": []string{"transfer.posted"}}).
			MustStatus(t, 201).JSON(t)["id"].(string)
		c.Do(t, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "EUR")).MustStatus(t, 201)
		row := `tr[data-endpoint="` + ep + `"]`
		b.do(t, chromedp.Navigate(b.base+"/console/webhooks/"))
		b.waitFor(t, "the failing endpoint is listed", "!!document.querySelector('"+row+"')")
		c.Do(t, "PATCH", "/v1/webhook-endpoints/"+ep, map[string]any{"enabled": false}).MustStatus(t, 200)
		b.waitFor(t, "it is listed as disabled, with Enable", "!!document.querySelector('"+row+` button[data-action="enable"]')`)
		b.screenshot(t, "webhooks")
		b.click(t, row+` button[data-action="recover"]`)
		b.waitFor(t, "recover leads back to the page", "location.pathname === '/console/webhooks/' && !document.querySelector('.error') && !!document.querySelector('"+row+"')")
		healthy.Store(true)
		b.click(t, row+` button[data-action="enable"]`)
		b.waitFor(t, "the endpoint, enabled and answering, leaves the list", "location.pathname === '/console/webhooks/' && !document.querySelector('"+row+"')")
		if got := c.Do(t, "GET", "/v1/webhook-endpoints/"+ep, nil).MustStatus(t, 200).JSON(t)["state"]; got != "healthy" {
			t.Fatalf("after Enable the endpoint is %v", got)
		}
	})

	t.Run("tenants and lab", func(t *testing.T) {
		b.do(t, chromedp.Navigate(b.base+"/console/tenants/"), chromedp.WaitVisible(`tr[data-tenant="`+c.Tenant+`"]`))
		b.screenshot(t, "tenants")
		b.do(t, chromedp.Click(`tr[data-tenant="`+c.Tenant+`"] a`), chromedp.WaitVisible("table.keys"))
		if html := eval[string](t, b, "document.body.innerHTML"); strings.Contains(html, c.Key) || !strings.Contains(html, c.Key[:9]) {
			t.Fatal("the tenant's page shows a secret, or not the key's prefix")
		}
		b.screenshot(t, "tenant")
		b.do(t, chromedp.Navigate(b.base+"/console/lab/"), chromedp.WaitVisible("section.report img"))
		b.waitFor(t, "the chart loads", "document.querySelector('section.report img').naturalWidth > 0")
		b.screenshot(t, "lab")
	})
}

// makeTraffic sends transfers, one every pause, until stop is called.
func makeTraffic(c *apitest.Client, from, to string, pause time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			c.Send(ctx, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "EUR"))
			if pause > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// mustLabReport writes a small lab report where the console looks for them.
func mustLabReport(t *testing.T, m *app.Main) {
	t.Helper()
	r := report.Report{Claim: "a claim", Measured: "what was measured", Columns: []string{"way", "figure"},
		Rows: [][]string{{"naive", "1"}, {"holdfast", "2"}}, Findings: []string{"holdfast is 2× naive"},
		Chart: &report.Chart{Title: "a chart", XLabel: "x", YLabel: "y", Series: []report.Series{
			{Name: "naive", Points: []report.Point{{X: 0, Y: 1}, {X: 1, Y: 1}}},
			{Name: "holdfast", Points: []report.Point{{X: 0, Y: 1}, {X: 1, Y: 2}}}}}}
	h := report.Heading{Name: "example", Description: "an example scenario", Section: "part 1", Scale: "small"}
	if err := report.Write(filepath.Join(m.Config.DataDir, "lab-results", "example"), h, &r, report.Machine{Cores: 2}); err != nil {
		t.Fatal(err)
	}
}
