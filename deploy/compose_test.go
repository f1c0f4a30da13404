package deploy_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/deploy"
	"github.com/holdfast/holdfast/receipts"
)

// service is the part of a compose service the tests read.
type service struct {
	Image           string            `yaml:"image"`
	Build           map[string]string `yaml:"build"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []string          `yaml:"volumes"`
	Restart         string            `yaml:"restart"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeVar is a variable compose takes from its --env-file.
var composeVar = regexp.MustCompile(`\$\{([A-Z_]+)[^}]*\}`)

// compose reads compose.yaml, its anchors and merge keys resolved and its
// variables replaced by their names in lower case (the secrets).
func compose(t *testing.T) map[string]service {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b = composeVar.ReplaceAllFunc(b, func(v []byte) []byte {
		return bytes.ToLower(composeVar.FindSubmatch(v)[1])
	})
	var f struct {
		Services map[string]service `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f.Services
}

// setting returns s's value in svc: its flag on the command line, else its
// environment variable; ok is false when neither gives it.
func setting(svc service, s deploy.Setting) (value string, ok bool) {
	for i, arg := range svc.Command {
		if v, found := strings.CutPrefix(arg, "--"+s.Flag+"="); found {
			return v, true
		}
		if arg == "--"+s.Flag && i+1 < len(svc.Command) {
			return svc.Command[i+1], true
		}
	}
	if s.Env == "" {
		return "", false
	}
	v, ok := svc.Environment[s.Env]
	return v, ok
}

// mustSetting is setting, failing t when svc does not give s.
func mustSetting(t *testing.T, name string, svc service, s deploy.Setting) string {
	t.Helper()
	v, ok := setting(svc, s)
	if !ok {
		t.Fatalf("%s does not set --%s (%s)", name, s.Flag, s.Env)
	}
	return v
}

// pgSetting returns the -c name=value a postgres service's command gives.
func pgSetting(t *testing.T, name string, svc service, key string) string {
	t.Helper()
	for _, arg := range svc.Command {
		if v, ok := strings.CutPrefix(arg, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s's command sets no %s", name, key)
	return ""
}

func byFlag(flag string) deploy.Setting {
	for _, s := range append(slices.Clone(deploy.MustAgree), deploy.Pools...) {
		if s.Flag == flag {
			return s
		}
	}
	panic("no setting --" + flag)
}

// The compose file runs the topology deploy.Topology describes, each
// long-running service with a health check and a restart policy, and
// nothing else but one-shot helpers.
func TestCompose_RunsTheTopology(t *testing.T) {
	t.Parallel()
	services := compose(t)
	top := deploy.Topology
	want := map[string]string{} // service name → what its image must be
	for _, g := range []struct {
		s     deploy.Service
		image string
	}{
		{top.Holdfast, "holdfast:"}, {top.NATS, "nats:"}, {top.PostgresPrimary, "postgres:"},
		{top.PostgresReplica, "postgres:"}, {top.S3, "versity/versitygw:"}, {top.Prometheus, "prom/prometheus:"},
	} {
		for _, name := range g.s.Services() {
			want[name] = g.image
		}
	}
	for name, image := range want {
		svc, ok := services[name]
		if !ok {
			t.Errorf("compose.yaml has no service %s", name)
			continue
		}
		if !strings.HasPrefix(svc.Image, image) {
			t.Errorf("%s runs image %q, want %s…", name, svc.Image, image)
		}
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
		if svc.Restart != "unless-stopped" && svc.Restart != "always" && svc.Restart != "on-failure" {
			t.Errorf("%s restarts %q", name, svc.Restart)
		}
	}
	for name, svc := range services {
		if _, ok := want[name]; !ok && svc.Restart != "no" {
			t.Errorf("compose.yaml runs %s, which deploy.Topology does not describe (only one-shot helpers may be added)", name)
		}
	}
	for _, name := range top.Holdfast.Services() {
		svc := services[name]
		if svc.Build["dockerfile"] != "deploy/container/Dockerfile" {
			t.Errorf("%s is not built from deploy/container/Dockerfile: %v", name, svc.Build)
		}
		for _, dep := range append(top.NATS.Services(), top.PostgresPrimary.Name) {
			if svc.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", name, dep)
			}
		}
	}
}

// Every replica gets the same value of each setting that must agree, and
// those values point at the topology's own services.
func TestCompose_ReplicasAgree(t *testing.T) {
	t.Parallel()
	services := compose(t)
	top := deploy.Topology
	names := top.Holdfast.Services()
	first := services[names[0]]
	for _, s := range deploy.MustAgree {
		v := mustSetting(t, names[0], first, s)
		for _, name := range names[1:] {
			if got := mustSetting(t, name, services[name], s); got != v {
				t.Errorf("--%s: %s has %q, %s has %q", s.Flag, names[0], v, name, got)
			}
		}
	}
	if got := mustSetting(t, names[0], first, byFlag("nats-replicas")); got != strconv.Itoa(top.NATSReplicas) {
		t.Errorf("--nats-replicas is %s, deploy.Topology says %d", got, top.NATSReplicas)
	}
	if top.NATSReplicas > top.NATS.Count {
		t.Errorf("%d stream replicas on %d NATS nodes", top.NATSReplicas, top.NATS.Count)
	}
	var hosts []string
	for _, u := range strings.Split(mustSetting(t, names[0], first, byFlag("nats-url")), ",") {
		hosts = append(hosts, hostOf(t, u))
	}
	if !slices.Equal(hosts, top.NATS.Services()) {
		t.Errorf("NATS_URL names %v, want every node: %v", hosts, top.NATS.Services())
	}
	if h := hostOf(t, mustSetting(t, names[0], first, byFlag("database-url"))); h != top.PostgresPrimary.Name {
		t.Errorf("DATABASE_URL reaches %s, want %s", h, top.PostgresPrimary.Name)
	}
	if h := hostOf(t, first.Environment["DATABASE_READ_URL"]); h != top.PostgresReplica.Name {
		t.Errorf("DATABASE_READ_URL reaches %s, want %s", h, top.PostgresReplica.Name)
	}
	blob, err := url.Parse(mustSetting(t, names[0], first, byFlag("blob-url")))
	if err != nil {
		t.Fatal(err)
	}
	if blob.Scheme != "s3" || hostOf(t, blob.Query().Get("endpoint")) != top.S3.Name {
		t.Errorf("--blob-url %s is not a bucket on the %s service", blob, top.S3.Name)
	}
	for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if first.Environment[env] == "" {
			t.Errorf("the replicas get no %s for the S3 server", env)
		}
	}
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return u.Hostname()
}

// Each NATS node reads deploy/nats/nats-server.conf as nats-server itself
// parses it: a JetStream node named after its service, in one cluster whose
// routes name all three nodes, on the client port the replicas dial.
func TestNATS_RoutesNameEveryNode(t *testing.T) {
	// Not parallel: the config takes the node's name from the environment.
	services := compose(t)
	nodes := deploy.Topology.NATS.Services()
	for _, name := range nodes {
		svc := services[name]
		if !slices.Contains(svc.Volumes, "./nats/nats-server.conf:/etc/nats/nats-server.conf:ro") ||
			!slices.Equal(svc.Command, []string{"nats-server", "--config", "/etc/nats/nats-server.conf"}) {
			t.Errorf("%s does not run nats/nats-server.conf: command %v, volumes %v", name, svc.Command, svc.Volumes)
		}
		for k, v := range svc.Environment {
			t.Setenv(k, v)
		}
		opts, err := server.ProcessConfigFile("nats/nats-server.conf")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if opts.ServerName != name || !opts.JetStream || opts.Cluster.Name == "" {
			t.Errorf("%s: server_name %q, JetStream %v, cluster %q", name, opts.ServerName, opts.JetStream, opts.Cluster.Name)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Hostname())
			if r.Port() != strconv.Itoa(opts.Cluster.Port) {
				t.Errorf("%s: route %s is not on the cluster port %d", name, r, opts.Cluster.Port)
			}
		}
		if !slices.Equal(routes, nodes) {
			t.Errorf("%s routes to %v, want every node: %v", name, routes, nodes)
		}
		natsURL := mustSetting(t, "holdfast-1", services["holdfast-1"], byFlag("nats-url"))
		if !strings.Contains(natsURL, fmt.Sprintf("nats://%s:%d", name, opts.Port)) {
			t.Errorf("NATS_URL %s does not dial %s's client port %d", natsURL, name, opts.Port)
		}
	}
}

// The replicas' connections fit in the primary's max_connections, less the
// superuser's reserve; the standby accepts as many; and docs/operations.md
// gives the same sum.
func TestCompose_ConnectionBudgetFits(t *testing.T) {
	t.Parallel()
	services := compose(t)
	top := deploy.Topology
	intake := receipts.IntakeConfig{}.WithDefaults().Committers
	perReplica := map[string]int{}
	var terms []string
	for i, name := range top.Holdfast.Services() {
		sum := intake
		for _, s := range deploy.Pools {
			n, err := strconv.Atoi(mustSetting(t, name, services[name], s))
			if err != nil || n < 1 {
				t.Fatalf("%s: --%s %v: give it explicitly (its default depends on the machine's cores)", name, s.Flag, err)
			}
			sum += n
			if i == 0 {
				terms = append(terms, strconv.Itoa(n))
			}
		}
		perReplica[name] = sum
	}
	total := 0
	for _, n := range perReplica {
		total += n
	}
	primary := services[top.PostgresPrimary.Name]
	maxConns, err := strconv.Atoi(pgSetting(t, top.PostgresPrimary.Name, primary, "max_connections"))
	if err != nil {
		t.Fatal(err)
	}
	const superuserReserved = 3 // PostgreSQL's default superuser_reserved_connections
	if total > maxConns-superuserReserved {
		t.Errorf("the replicas open %d connections (%v); pg-primary allows %d, %d of them for superusers", total, perReplica, maxConns, superuserReserved)
	}
	standby, err := strconv.Atoi(pgSetting(t, top.PostgresReplica.Name, services[top.PostgresReplica.Name], "max_connections"))
	if err != nil || standby < maxConns {
		t.Errorf("pg-replica's max_connections %d (%v) is below the primary's %d: a hot standby refuses to start", standby, err, maxConns)
	}
	formula := fmt.Sprintf("%d × (%s + %d) = %d", top.Holdfast.Count, strings.Join(terms, " + "), intake, total)
	if docs := operations(t); !strings.Contains(docs, formula) || !strings.Contains(docs, fmt.Sprintf("`max_connections` %d", maxConns)) {
		t.Errorf("docs/operations.md does not give the budget %q within `max_connections` %d", formula, maxConns)
	}
}

// Docker waits longer than --shutdown-timeout before SIGKILL, so a stopping
// replica drains its requests, batches and relay.
func TestCompose_StopGraceExceedsShutdownTimeout(t *testing.T) {
	t.Parallel()
	services := compose(t)
	for _, name := range deploy.Topology.Holdfast.Services() {
		svc := services[name]
		shutdown, err := time.ParseDuration(svc.Environment["HOLDFAST_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Fatalf("%s: HOLDFAST_SHUTDOWN_TIMEOUT: %v", name, err)
		}
		grace, err := time.ParseDuration(svc.StopGracePeriod)
		if err != nil || grace <= shutdown {
			t.Errorf("%s: stop_grace_period %q (%v) is not longer than the shutdown timeout %v", name, svc.StopGracePeriod, err, shutdown)
		}
	}
}

// Prometheus scrapes every replica's metrics listener and loads the alert
// rules the compose file mounts.
func TestPrometheus_ScrapesEveryReplica(t *testing.T) {
	t.Parallel()
	services := compose(t)
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, name := range deploy.Topology.Holdfast.Services() {
		addr := services[name].Environment["HOLDFAST_METRICS_ADDR"]
		if want := name + addr; !strings.HasPrefix(addr, ":") || !slices.Contains(targets, want) {
			t.Errorf("prometheus.yml does not scrape %s (HOLDFAST_METRICS_ADDR %q); targets %v", want, addr, targets)
		}
	}
	prom := services[deploy.Topology.Prometheus.Name]
	if !slices.Equal(cfg.RuleFiles, []string{"/etc/prometheus/alerts.yml"}) ||
		!slices.Contains(prom.Volumes, "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro") {
		t.Errorf("prometheus loads %v with volumes %v; want alerts.yml mounted and loaded", cfg.RuleFiles, prom.Volumes)
	}
}
