package load_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// TestPoster: the load generator's client gets each response's status,
// whatever its framing (Content-Length, chunked, Connection: close), sends
// the body and header lines as given, reuses connections, never opens more
// than its maximum, and sends a request again only when a reused
// connection turns out to be closed before any answer.
func TestPoster(t *testing.T) {
	t.Parallel()
	var open, peak atomic.Int64
	var bodies sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies.Store(r.Header.Get("Idempotency-Key"), string(b))
		switch r.URL.Path {
		case "/chunked":
			w.WriteHeader(202)
			for range 3 {
				w.Write([]byte(strings.Repeat("x", 5000)))
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(503)
		case "/slow":
			time.Sleep(20 * time.Millisecond)
			w.WriteHeader(201)
		default:
			w.WriteHeader(201)
			w.Write([]byte(`{"ok":true}`))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			if n := open.Add(1); n > peak.Load() {
				peak.Store(n)
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()

	p, err := load.NewPoster(srv.URL, 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	// In this order: the /close connection is closed, and /again opens the
	// one connection left open. (In a map's random order, /close came last
	// once, leaving none open; its close had not landed when the count
	// below began, so the next four connections made a fifth.)
	for _, req := range []struct {
		path string
		want int
	}{{"/", 201}, {"/chunked", 202}, {"/close", 503}, {"/again", 201}} {
		path, want := req.path, req.want
		status, err := p.Post(ctx, path, []byte("Idempotency-Key: "+path+"\r\n"), []byte("body of "+path))
		if err != nil || status != want {
			t.Fatalf("POST %s: %d %v, want %d", path, status, err, want)
		}
		if got, _ := bodies.Load(path); got != "body of "+path {
			t.Fatalf("POST %s: server read %q", path, got)
		}
	}

	// The server notes a closed connection (the /close one) asynchronously:
	// let it land before counting, or it counts as a fifth. The sequential
	// requests above leave one connection open.
	for deadline := time.Now().Add(5 * time.Second); open.Load() > 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	peak.Store(open.Load())

	// 32 concurrent requests share at most 4 connections.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Go(func() {
			if status, err := p.Post(ctx, "/slow", nil, nil); err != nil || status != 201 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || peak.Load() > 4 {
		t.Fatalf("%d failed, %d connections at the peak (max 4)", failed.Load(), peak.Load())
	}

	// The server drops its idle connections: the next request goes out again on a new one.
	srv.CloseClientConnections()
	if status, err := p.Post(ctx, "/", nil, nil); err != nil || status != 201 {
		t.Fatalf("after the server closed idle connections: %d %v", status, err)
	}

	// A request past its deadline fails instead of hanging.
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if _, err := p.Post(short, "/slow", nil, nil); err == nil {
		t.Fatal("a request past its context's deadline succeeded")
	}
}
