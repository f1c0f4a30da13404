package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// replicaFixture is a Holdfast whose --database-read-url is a streaming
// replica, a tenant and two accounts with one transfer between them,
// replayed on the replica.
type replicaFixture struct {
	rp       *pgtest.Replicated
	m        *app.Main
	c        *apitest.Client
	from, to string
	first    string // the transfer made before the test's steps
}

func newReplicaFixture(t *testing.T, configure func(*app.Config)) *replicaFixture {
	t.Helper()
	rp := pgtest.NewReplicated(t)
	m := apptest.MustStart(t, rp.PrimaryURL, func(c *app.Config) {
		c.DatabaseReadURL = rp.ReplicaURL
		if configure != nil {
			configure(c)
		}
	})
	f := &replicaFixture{rp: rp, m: m, c: apptest.Admin(m).MustTenant(t, t.Name())}
	f.from, f.to = f.c.MustAccount(t, "EUR", true), f.c.MustAccount(t, "EUR", false)
	f.first = f.transfer(t)
	rp.WaitReplayed(t)
	f.waitMetric(t, "holdfast_db_replica_up", "", func(v float64) bool { return v == 1 })
	return f
}

// transfer makes a transfer on the primary and returns its id.
func (f *replicaFixture) transfer(t *testing.T) string {
	t.Helper()
	return f.c.Do(t, "POST", "/v1/transfers", apitest.Transfer(f.from, f.to, 100, "EUR")).MustStatus(t, 201).JSON(t)["id"].(string)
}

// export returns the CSV export of the credited account.
func (f *replicaFixture) export(t *testing.T) string {
	t.Helper()
	return string(f.c.Do(t, "GET", "/v1/accounts/"+f.to+"/transactions.csv", nil).MustStatus(t, 200).Body)
}

// metric returns the value of the gauge or counter name (with label
// reason=reason, if reason is not empty) in f's registry, 0 if absent.
func (f *replicaFixture) metric(t *testing.T, name, reason string) float64 {
	t.Helper()
	mfs, err := f.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != reason) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitMetric waits until ok holds of the metric and returns its value; it
// fails t after a minute.
func (f *replicaFixture) waitMetric(t *testing.T, name, reason string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		v := f.metric(t, name, reason)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{reason=%q} stayed at %v", name, reason, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadReplica_ExportsAndListsLagWhileGetsDoNot: with replay paused on
// the replica, a transfer made since is missing from the export and the
// lists (they read the replica) but a get by id finds it (it reads the
// primary), and so do an export and a list of an account made since (not
// found on the replica, they ask the primary); the lag metric rises while replay is paused and falls after
// it resumes, when the export has the transfer too.
func TestReadReplica_ExportsAndListsLagWhileGetsDoNot(t *testing.T) {
	t.Parallel()
	f := newReplicaFixture(t, nil)
	if csv := f.export(t); !strings.Contains(csv, f.first) {
		t.Fatalf("export lacks the replayed transfer %s:\n%s", f.first, csv)
	}

	f.rp.PauseReplay(t)
	second := f.transfer(t)
	f.c.Do(t, "GET", "/v1/transfers/"+second, nil).MustStatus(t, 200)
	f.c.Do(t, "GET", "/v1/accounts/"+f.to, nil).MustStatus(t, 200)
	if csv := f.export(t); !strings.Contains(csv, f.first) || strings.Contains(csv, second) {
		t.Errorf("export while replay is paused: want %s and not %s (not yet replayed):\n%s", f.first, second, csv)
	}
	for _, path := range []string{"/v1/accounts/" + f.to + "/transfers", "/v1/transfers?account_id=" + f.to} {
		body := string(f.c.Do(t, "GET", path, nil).MustStatus(t, 200).Body)
		if !strings.Contains(body, f.first) || strings.Contains(body, second) {
			t.Errorf("GET %s while replay is paused: want %s and not %s: %s", path, f.first, second, body)
		}
	}
	// An account the replica has not seen yet is found on the primary, not 404.
	fresh := f.c.MustAccount(t, "EUR", false)
	f.c.Do(t, "GET", "/v1/accounts/"+fresh+"/transactions.csv", nil).MustStatus(t, 200)
	f.c.Do(t, "GET", "/v1/accounts/"+fresh+"/transfers", nil).MustStatus(t, 200)
	lag := f.waitMetric(t, "holdfast_db_replica_lag_seconds", "", func(v float64) bool { return v > 0 })
	f.waitMetric(t, "holdfast_db_replica_lag_seconds", "", func(v float64) bool { return v > lag })
	if up := f.metric(t, "holdfast_db_replica_up", ""); up != 1 {
		t.Errorf("holdfast_db_replica_up = %v within the default 30s lag bound, want 1", up)
	}

	f.rp.ResumeReplay(t)
	f.rp.WaitReplayed(t)
	f.waitMetric(t, "holdfast_db_replica_lag_seconds", "", func(v float64) bool { return v < lag })
	if csv := f.export(t); !strings.Contains(csv, second) {
		t.Errorf("export after replay resumed lacks %s:\n%s", second, csv)
	}
}

// TestReadReplica_FallsBackToThePrimary: a replica further behind than
// --replica-max-lag, and then one that is down, leave reads to the
// primary, which has every transfer; nothing fails, and the fallbacks are
// counted by reason.
func TestReadReplica_FallsBackToThePrimary(t *testing.T) {
	t.Parallel()
	f := newReplicaFixture(t, func(c *app.Config) { c.ReplicaMaxLag = 500 * time.Millisecond })

	f.rp.PauseReplay(t)
	second := f.transfer(t)
	f.waitMetric(t, "holdfast_db_replica_up", "", func(v float64) bool { return v == 0 })
	if csv := f.export(t); !strings.Contains(csv, second) {
		t.Errorf("export from a lagging replica's primary lacks %s:\n%s", second, csv)
	}
	if n := f.metric(t, "holdfast_db_replica_fallbacks_total", "lag"); n < 1 {
		t.Errorf("fallbacks for lag = %v, want at least 1", n)
	}
	f.rp.ResumeReplay(t)
	f.waitMetric(t, "holdfast_db_replica_up", "", func(v float64) bool { return v == 1 })

	f.rp.StopReplica(t)
	third := f.transfer(t)
	if csv := f.export(t); !strings.Contains(csv, third) {
		t.Errorf("export with the replica down lacks %s:\n%s", third, csv)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for _, path := range []string{
		"/v1/accounts", "/v1/accounts/" + f.to + "/transfers", "/v1/transfers?account_id=" + f.to, "/v1/audit",
		"/v1/accounts/" + f.to + "/balances?from=" + day.Format(time.RFC3339) + "&to=" + day.Add(24*time.Hour).Format(time.RFC3339) + "&interval=hour",
		"/v1/analytics/rollups?from=" + day.Format(time.RFC3339) + "&to=" + day.Add(24*time.Hour).Format(time.RFC3339),
	} {
		f.c.Do(t, "GET", path, nil).MustStatus(t, 200)
	}
	if body := string(f.c.Do(t, "GET", "/v1/accounts/"+f.to+"/transfers", nil).MustStatus(t, 200).Body); !strings.Contains(body, third) {
		t.Errorf("transfers with the replica down lack %s: %s", third, body)
	}
	if n := f.metric(t, "holdfast_db_replica_fallbacks_total", "unreachable"); n < 1 {
		t.Errorf("fallbacks for an unreachable replica = %v, want at least 1", n)
	}
}
