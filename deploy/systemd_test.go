package deploy_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/deploy"
)

// envFile reads systemd/holdfast.env.example's NAME=value lines.
func envFile(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("systemd/holdfast.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// unit reads systemd/holdfast.service's Key=value lines (a key given twice
// keeps its last value).
func unit(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("systemd/holdfast.service")
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			u[k] = v
		}
	}
	return u
}

// The example env file gives every setting that must agree, and the unit
// passes those without an environment variable as flags from it.
func TestSystemd_EnvFileGivesWhatMustAgree(t *testing.T) {
	t.Parallel()
	env, u := envFile(t), unit(t)
	if u["EnvironmentFile"] != "/etc/holdfast/holdfast.env" {
		t.Errorf("EnvironmentFile=%s", u["EnvironmentFile"])
	}
	for _, s := range deploy.MustAgree {
		name := s.Env
		if name == "" {
			name = "HOLDFAST_" + strings.ToUpper(strings.ReplaceAll(s.Flag, "-", "_"))
			if !strings.Contains(u["ExecStart"], "--"+s.Flag+" ${"+name+"}") {
				t.Errorf("ExecStart does not pass --%s ${%s}: %s", s.Flag, name, u["ExecStart"])
			}
		}
		if env[name] == "" {
			t.Errorf("holdfast.env.example does not set %s (--%s)", name, s.Flag)
		}
	}
	for _, s := range deploy.Pools {
		if env[s.Env] == "" {
			t.Errorf("holdfast.env.example does not size %s (--%s): its default depends on the cores", s.Env, s.Flag)
		}
	}
}

// The unit runs without privileges on a read-only system, restarts
// on failure, and gives SIGTERM longer than --shutdown-timeout to drain.
func TestSystemd_UnitHardenedAndDrains(t *testing.T) {
	t.Parallel()
	u := unit(t)
	for k, v := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "StateDirectory": "holdfast",
		"Restart": "on-failure", "KillSignal": "SIGTERM", "CapabilityBoundingSet": "",
	} {
		if got, ok := u[k]; !ok || got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if !strings.HasPrefix(u["ExecStart"], "/usr/local/bin/holdfast serve --data-dir /var/lib/holdfast ") {
		t.Errorf("ExecStart=%s does not serve from the state directory", u["ExecStart"])
	}
	if u["LimitNOFILE"] == "" {
		t.Error("no LimitNOFILE")
	}
	shutdown, err := time.ParseDuration(envFile(t)["HOLDFAST_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatal(err)
	}
	stop, err := time.ParseDuration(u["TimeoutStopSec"])
	if err != nil || stop <= shutdown {
		t.Errorf("TimeoutStopSec=%s (%v) is not longer than HOLDFAST_SHUTDOWN_TIMEOUT %v", u["TimeoutStopSec"], err, shutdown)
	}
}

// docs/operations.md lists each setting that must agree, by its flag.
func TestOperations_ListsWhatMustAgree(t *testing.T) {
	t.Parallel()
	docs := operations(t)
	_, section, ok := strings.Cut(docs, "### Settings that must agree")
	if !ok {
		t.Fatal(`docs/operations.md has no "### Settings that must agree"`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	for _, s := range deploy.MustAgree {
		if !strings.Contains(section, "`--"+s.Flag+"`") {
			t.Errorf("docs/operations.md's settings that must agree do not list --%s", s.Flag)
		}
	}
}
