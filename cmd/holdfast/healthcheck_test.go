package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheck_ZeroOnlyOnOK: the container health check exits 0 when
// the endpoint answers 200, and 1 on any other answer or none.
func TestHealthcheck_ZeroOnlyOnOK(t *testing.T) {
	t.Parallel()
	status := map[string]int{"/readyz": http.StatusOK, "/draining": http.StatusServiceUnavailable}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status[r.URL.Path])
	}))
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	defer srv.Close()
	for _, c := range []struct {
		url  string
		want int
	}{
		{srv.URL + "/readyz", 0},
		{srv.URL + "/draining", 1},
		{closed.URL + "/readyz", 1},
	} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run([]string{"healthcheck", "--url", c.url}, &stdout, &stderr), &stderr)
		if code != c.want {
			t.Errorf("healthcheck %s: exit %d (stderr %q), want %d", c.url, code, stderr.String(), c.want)
		}
		if c.want == 1 && !strings.Contains(stderr.String(), "healthcheck") {
			t.Errorf("healthcheck %s: stderr %q does not say why", c.url, stderr.String())
		}
	}
}
