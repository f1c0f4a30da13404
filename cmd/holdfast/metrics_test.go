package main_test

import (
	"io"
	"strings"
	"testing"

	main "github.com/holdfast/holdfast/cmd/holdfast"
	"github.com/holdfast/holdfast/internal/apitest"
	"github.com/holdfast/holdfast/internal/pgtest"
)

// TestMain_MetricsAddr: --metrics-addr serves /metrics, the consumer and
// receipt gauges included, on a listener of its own and not on --addr.
func TestMain_MetricsAddr(t *testing.T) {
	t.Parallel()
	m := main.NewMain()
	if err := m.ParseFlags("serve", []string{"--database-url", "postgres://x", "--metrics-addr", "127.0.0.1:9464"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Config.MetricsAddr != "127.0.0.1:9464" || main.NewMain().Config.MetricsAddr != "" {
		t.Fatalf("--metrics-addr parsed as %q, default %q", m.Config.MetricsAddr, main.NewMain().Config.MetricsAddr)
	}

	m = MustRunMain(t, pgtest.NewDatabase(t), func(c *main.Config) { c.MetricsAddr = "127.0.0.1:0" })
	(&apitest.Client{URL: m.HTTP.URL()}).Do(t, "GET", "/metrics", nil).MustStatus(t, 404)
	metrics := string((&apitest.Client{URL: "http://" + m.HTTP.MetricsAddr()}).Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body)
	for _, want := range []string{`holdfast_consumer_lag_messages{group="analytics"}`, `holdfast_receipt_jobs_cap`, `holdfast_http_requests_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics on --metrics-addr lacks %s", want)
		}
	}
}
