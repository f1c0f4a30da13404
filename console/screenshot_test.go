package console_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// TestConsole_ReadmeScreenshot makes docs/console-overview.png: the
// overview after two minutes of traffic in waves of 1 to 128 clients. It
// runs only when HOLDFAST_SCREENSHOT names the file to write:
//
//	HOLDFAST_SCREENSHOT=$PWD/docs/console-overview.png go test ./console -run ReadmeScreenshot -timeout 10m
func TestConsole_ReadmeScreenshot(t *testing.T) {
	out := os.Getenv("HOLDFAST_SCREENSHOT")
	if out == "" {
		t.Skip("set HOLDFAST_SCREENSHOT to the file to write")
	}
	m := apptest.MustStart(t, pgtest.NewDatabase(t))
	c := apptest.Admin(m).MustTenant(t, "screenshot")
	accounts := make([]string, 64)
	for i := range accounts {
		accounts[i] = c.MustAccount(t, "EUR", true)
	}
	b := mustBrowser(t, m.HTTP.URL())
	b.do(t, chromedp.Navigate(b.base+"/console/login"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", apptest.AdminToken), chromedp.Submit("#token"), chromedp.WaitVisible("#charts"))
	for _, clients := range []int{1, 8, 32, 128, 32, 8, 64, 128} {
		wave(c, accounts, clients, 15*time.Second)
	}
	b.do(t, chromedp.EmulateViewport(1280, 760))
	b.waitFor(t, "the charts are drawn", "document.querySelectorAll('#charts polyline').length > 8")
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wave sends transfers between random accounts from clients goroutines for d.
func wave(c *apitest.Client, accounts []string, clients int, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				from, to := accounts[(i+k)%len(accounts)], accounts[(i+2*k+1)%len(accounts)]
				if from != to {
					c.Send(ctx, "POST", "/v1/transfers", apitest.Transfer(from, to, 1, "EUR"))
				}
			}
		}()
	}
	wg.Wait()
}
