package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`holdfast_[a-z_]+`)

// operations returns docs/operations.md.
func operations(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mustDocumented fails t for every holdfast_ metric in text that the
// metrics table of docs/operations.md does not list.
func mustDocumented(t *testing.T, what, text, docs string) {
	t.Helper()
	for _, name := range metricName.FindAllString(text, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		if !strings.Contains(docs, "| `"+name+"` |") {
			t.Errorf("%s uses %s, which docs/operations.md's metrics table does not list", what, name)
		}
	}
}

// Every alert names only documented metrics and has a runbook entry whose
// anchor its annotation links to.
func TestAlerts_DocumentedWithRunbooks(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	docs := operations(t)
	mustDocumented(t, "alerts.yml", string(b), docs)
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\w+)$`).FindAllStringSubmatch(string(b), -1)
	if len(alerts) < 8 {
		t.Fatalf("alerts.yml has %d alerts", len(alerts))
	}
	for _, a := range alerts {
		if !strings.Contains(docs, "\n#### "+a[1]+"\n") {
			t.Errorf("docs/operations.md has no runbook heading for %s", a[1])
		}
		if !strings.Contains(string(b), "docs/operations.md#"+strings.ToLower(a[1])) {
			t.Errorf("%s does not link its runbook", a[1])
		}
	}
}

// The dashboard is valid JSON whose panels query documented metrics.
func TestDashboard_QueriesDocumentedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/holdfast.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	docs := operations(t)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			mustDocumented(t, "panel "+p.Title, q.Expr, docs)
		}
	}
}
