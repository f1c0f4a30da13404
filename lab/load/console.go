package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ConsoleWatcher does what an operator's browser does with the console
// open in three tabs: the overview polls its chart samples every second,
// the event log and receipts pages reload their live part every 2 s.
type ConsoleWatcher struct {
	cancel   context.CancelFunc
	done     sync.WaitGroup
	mu       sync.Mutex
	requests int
	failed   int
}

// WatchConsole logs in to the console at base (a server's URL) with the
// admin token and watches it until Stop.
func WatchConsole(ctx context.Context, base, token string) (*ConsoleWatcher, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.PostForm(base+"/console/login", url.Values{"token": {token}})
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, "/console/") || resp.Request.URL.Path == "/console/login" {
		return nil, fmt.Errorf("console login: %s at %s", resp.Status, resp.Request.URL.Path)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &ConsoleWatcher{cancel: cancel}
	var since int64
	w.every(ctx, time.Second, func() string {
		return base + "/console/api/series?since=" + strconv.FormatInt(since, 10)
	}, hc, func() { since = time.Now().Add(-2 * time.Second).UnixMilli() })
	for _, page := range []string{"/console/events/", "/console/receipts/"} {
		w.every(ctx, 2*time.Second, func() string { return base + page + "?live=1" }, hc, nil)
	}
	return w, nil
}

// every GETs url() every interval until ctx ends, then calls after.
func (w *ConsoleWatcher) every(ctx context.Context, interval time.Duration, url func() string, hc *http.Client, after func()) {
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			req, _ := http.NewRequestWithContext(ctx, "GET", url(), nil)
			resp, err := hc.Do(req)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.requests++
			if !ok {
				w.failed++
			}
			w.mu.Unlock()
			if after != nil {
				after()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop stops watching and returns the requests made and how many failed.
func (w *ConsoleWatcher) Stop() (requests, failed int) {
	w.cancel()
	w.done.Wait()
	return w.requests, w.failed
}
