package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/postgres"
)

// SoakOptions are the settings of `holdfast-lab bench soak`; zero values
// take the defaults given.
type SoakOptions struct {
	DatabaseURL string // server to create the database on; empty: a private cluster
	Holdfast    string // the holdfast binary run as the server. Required.
	Duration    time.Duration
	// Rate is keyed transfers per second; 0 measures the transfer capacity
	// for CapacityProbe first and takes CapacityFraction of it.
	Rate             float64
	CapacityFraction float64       // default 0.5
	CapacityProbe    time.Duration // default 10s
	EventShare       float64       // client-event requests per transfer; default 0.5
	ReceiptRate      float64       // uploads per second; default Rate/50, at most 2
	ExportEvery      time.Duration // default 10s
	Retry            float64       // share of keyed requests sent again after their answer; default 0.05
	// Retention is the period the shrunk limits derive from (soakLimits);
	// default Duration/6, at least 10s: several turnovers in one run.
	Retention time.Duration
	Interval  time.Duration // between samples; default 10s
	// Window is the length of the first and last stretches the targets
	// compare; default 5m, or Duration/5 when Duration is under 10m.
	Window   time.Duration
	Accounts int           // default 1,000, overdraft allowed (no transfer fails for funds)
	MaxDrain time.Duration // wait at most this for the backlog after the traffic; default 3m
	Out      string        // directory for samples.csv and the charts; empty: none written
}

func (o SoakOptions) withDefaults() SoakOptions {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Duration, 30*time.Minute)
	def(&o.CapacityProbe, 10*time.Second)
	def(&o.ExportEvery, 10*time.Second)
	def(&o.Retention, max(10*time.Second, o.Duration/6))
	def(&o.Interval, 10*time.Second)
	def(&o.MaxDrain, 3*time.Minute)
	if o.Window == 0 {
		o.Window = 5 * time.Minute
		if o.Duration < 10*time.Minute {
			o.Window = o.Duration / 5
		}
	}
	if o.CapacityFraction == 0 {
		o.CapacityFraction = 0.5
	}
	if o.EventShare == 0 {
		o.EventShare = 0.5
	}
	if o.Retry == 0 {
		o.Retry = 0.05
	}
	if o.Accounts == 0 {
		o.Accounts = 1000
	}
	return o
}

func (o SoakOptions) validate() error {
	switch {
	case o.Holdfast == "":
		return errors.New("soak: the holdfast binary is required")
	case o.Duration < 5*o.Interval:
		return fmt.Errorf("soak: a duration of %s gives fewer than 5 samples at %s", o.Duration, o.Interval)
	case 2*o.Window > o.Duration:
		return fmt.Errorf("soak: the first and last windows (%s each) overlap in %s", o.Window, o.Duration)
	case o.Rate < 0 || !(o.CapacityFraction > 0 && o.CapacityFraction <= 1) || o.Retry < 0 || o.Retry > 1 || o.Accounts < 2:
		return errors.New("soak: rate ≥ 0, capacity fraction in (0, 1], retry share in [0, 1] and at least 2 accounts")
	}
	return nil
}

// SoakResult is what a soak measured and checked.
type SoakResult struct {
	Options  SoakOptions // with the defaults and the rate chosen
	Capacity float64     // transfers per second in the probe; 0 if Rate was given
	Passed   []string    // the shrunk limits passed to the server
	Samples  []SoakSample
	Checks   []SoakCheck // correctness at the end: all must pass
	Targets  []SoakCheck // the figures: PASS or MISS
	Machine  string
}

// SoakCheck is one check or target and its figures.
type SoakCheck struct {
	Name   string
	OK     bool
	Detail string
}

// soakRun is one soak's moving parts.
type soakRun struct {
	o       SoakOptions
	srv     *soakServer
	db      *postgres.DB
	tenant  string
	traffic *soakTraffic
	meters  map[string]*soakMeter
	seeded  int64 // ledger changes made without events (the seeded accounts)
}

// Soak runs the soak: Holdfast as a child process with shrunk limits,
// mixed traffic at a constant rate for o.Duration, samples every
// o.Interval; then the final checks and the targets. Progress goes to
// stderr; the caller prints the result (PrintSoak) and writes its files
// (WriteSoak).
func Soak(ctx context.Context, o SoakOptions, stderr io.Writer) (*SoakResult, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "holdfast-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dbURL, cluster, err := createBenchDatabase(ctx, o.DatabaseURL, dir)
	if err != nil {
		return nil, err
	}
	if cluster != nil {
		defer cluster.Stop()
	}
	r := &soakRun{o: o}
	fmt.Fprintf(stderr, "soak: starting %s serve with limits shrunk to a %s retention period\n", o.Holdfast, o.Retention)
	if r.srv, err = startSoakServer(ctx, o.Holdfast, dbURL, filepath.Join(dir, "data"), o.Retention, stderr); err != nil {
		return nil, err
	}
	defer r.srv.stop()
	if r.db, err = postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: 4, AcquireTimeout: -1}); err != nil {
		return nil, err
	}
	defer r.db.Close()
	res := &SoakResult{Passed: r.srv.passed, Machine: machine(ctx, r.db.Pool)}
	if err := r.setup(ctx, res, stderr); err != nil {
		return nil, err
	}
	defer r.traffic.close()
	res.Options = r.o
	fmt.Fprintf(stderr, "soak: %.0f transfers/s, %.0f client events/s, %.2f receipts/s, an export every %s, for %s\n",
		r.o.Rate, r.o.Rate*r.o.EventShare, r.o.ReceiptRate, r.o.ExportEvery, r.o.Duration)
	res.Samples = r.drive(ctx, stderr)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	fmt.Fprintln(stderr, "soak: traffic done; waiting for the backlog, then checking")
	res.Checks = r.checks(ctx)
	res.Targets = r.targets(res.Samples)
	return res, nil
}

// setup makes the tenant and its accounts and picks the rate.
func (r *soakRun) setup(ctx context.Context, res *SoakResult, stderr io.Writer) error {
	t, k, err := postgres.NewTenantService(r.db).CreateTenant(ctx, holdfast.TenantCreate{Name: "soak"}, nil)
	if err != nil {
		return err
	}
	r.tenant = t.ID
	accounts, err := SeedAccounts(ctx, r.db.Pool, t.ID, "USD", r.o.Accounts, 0, true)
	if err != nil {
		return err
	}
	r.seeded = int64(len(accounts)) + 1 // and the equity account
	run := time.Now().UnixNano()
	if r.traffic, err = newSoakTraffic(r.srv.base, k.Secret, run, accounts, r.o.Retry); err != nil {
		return err
	}
	if r.o.Rate == 0 {
		fmt.Fprintf(stderr, "soak: measuring the transfer capacity for %s (64 clients, closed loop)\n", r.o.CapacityProbe)
		pick := func(rng *rand.Rand) (string, string) {
			i, j := rng.IntN(len(accounts)), rng.IntN(len(accounts)-1)
			if j >= i {
				j++
			}
			return accounts[i], accounts[j]
		}
		probe := load.ClosedLoop(ctx, "capacity", 64, r.o.CapacityProbe, load.TransferCall(r.traffic.poster, k.Secret, run, pick))
		if probe.Throughput == 0 {
			return fmt.Errorf("soak: the capacity probe committed no transfer (%d sent, %d failed, %d errors)", probe.Sent, probe.Failed, probe.Errors)
		}
		res.Capacity = probe.Throughput
		r.o.Rate = r.o.CapacityFraction * probe.Throughput
	}
	if r.o.ReceiptRate == 0 {
		r.o.ReceiptRate = min(2, r.o.Rate/50)
	}
	return nil
}

// drive runs the traffic and samples until the duration is over.
func (r *soakRun) drive(ctx context.Context, stderr io.Writer) []SoakSample {
	o := r.o
	first := [2]time.Duration{0, o.Window}
	last := [2]time.Duration{o.Duration - o.Window, o.Duration}
	rates := map[string]float64{"transfers": o.Rate, "events": o.Rate * o.EventShare, "receipts": o.ReceiptRate,
		"exports": 1 / o.ExportEvery.Seconds()}
	r.meters = map[string]*soakMeter{}
	start := time.Now()
	var wg sync.WaitGroup
	for _, kind := range soakKinds {
		r.meters[kind] = newSoakMeter(first, last)
	}
	for _, kind := range soakKinds {
		m := r.meters[kind]
		wg.Go(func() { soakLoop(ctx, start, rates[kind], o.Duration, 1024, m, r.traffic.call(kind)) })
	}
	var samples []SoakSample
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	prev := start
	printSoakHeader(stderr)
	for time.Since(start) < o.Duration && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case now := <-tick.C:
			s := r.sample(ctx, now.Sub(start), now.Sub(prev))
			prev = now
			samples = append(samples, s)
			printSoakSample(stderr, s)
		}
	}
	wg.Wait()
	r.traffic.repeats.Wait()
	return samples
}
