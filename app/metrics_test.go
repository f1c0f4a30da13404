package app_test

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// TestMain_MetricsAddr: Config.MetricsAddr serves /metrics, the consumer and
// receipt gauges included, on a listener of its own and not on the API address.
func TestMain_MetricsAddr(t *testing.T) {
	t.Parallel()
	m := apptest.MustStart(t, pgtest.NewDatabase(t), func(c *app.Config) { c.MetricsAddr = "127.0.0.1:0" })
	(&apitest.Client{URL: m.HTTP.URL()}).Do(t, "GET", "/metrics", nil).MustStatus(t, 404)
	metrics := string((&apitest.Client{URL: "http://" + m.HTTP.MetricsAddr()}).Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body)
	for _, want := range []string{`holdfast_consumer_lag_messages{group="analytics"}`, `holdfast_receipt_jobs_cap`, `holdfast_receipt_intake_queue_depth`, `holdfast_http_requests_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics on --metrics-addr lacks %s", want)
		}
	}
}
