package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab"
	"github.com/holdfast/holdfast/overload"
)

func benchOverload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("holdfast bench overload", flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create the benchmark's databases on (env DATABASE_URL); empty: a private cluster in a temp dir")
	duration := fs.Duration("duration", 8*time.Second, "length of each open-loop run")
	capDuration := fs.Duration("capacity-duration", 4*time.Second, "length of the closed loop that measures capacity")
	capClients := fs.String("capacity-clients", "64,256", "closed-loop client counts that measure capacity (the peak counts), comma-separated")
	loadList := fs.String("loads", "0.5,1,2,5", "open-loop rates as multiples of the measured capacity, comma-separated")
	accounts := fs.Int("accounts", 10_000, "funded accounts the transfers move money between")
	pool := fs.Int("pool", 16, "database connections")
	maxInFlight := fs.Int("max-in-flight", 4096, "the load generator's outstanding requests; past it a request is counted as not sent")
	conns := fs.Int("conns", 256, "the load generator's connections (as a load balancer would hold); requests beyond them wait in the client, on the clock")
	goodWithin := fs.Duration("good-within", time.Second, "a success counts towards goodput if it came within this of its intended send time; sent as Request-Timeout")
	minLimit := fs.Int("admission-min-limit", 0, "protection on: the server's --admission-min-limit; 0 keeps serve's default")
	queueWait := fs.Duration("admission-queue-wait", 0, "protection on: the server's --admission-queue-wait; 0 keeps serve's default")
	tolerance := fs.Float64("admission-tolerance", 0, "protection on: the server's --admission-tolerance; 0 keeps serve's default")
	ledgerMaxWait := fs.Duration("ledger-max-wait", 0, "protection on: the server's --ledger-max-wait; 0 keeps serve's default")
	costDuration := fs.Duration("cost-duration", 3*time.Second, "length of the closed loops that measure what a transfer and a refusal cost the machine; 0 skips them")
	cpuDuration := fs.Duration("cpu-duration", 5*time.Second, "length of each CPU-lane run; 0 skips them")
	cpuWorkers := fs.Int("cpu-workers", 32, "goroutines submitting CPU-bound jobs to the lane")
	cpuIterations := fs.Int("cpu-iterations", 100_000, "SHA-256 rounds per CPU-bound job (100,000 is about 25 ms)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: holdfast bench overload [flags]

Overload protection on vs off. First short closed loops measure the
capacity of POST /v1/transfers (the peak over --capacity-clients, or what an
open loop at 2× that peak gets done, if more); then an open loop (constant arrival rate,
latency from each request's intended send time) offers 0.5×, 1×, 2× and 5×
that capacity to Holdfast with protection on (admission control, a bounded
CPU lane, a database acquire timeout) and off (none of them), each on a
fresh database (both servers run side by side and the runs alternate), while
/healthz is probed every 50 ms. Reported: goodput
(201 within 1 s, per second), p50/p99 of successes, the share shed (503 or
429) and its p99, /healthz p99. Before the loads, two short closed loops
measure what a transfer and the server's cheapest refusal (a request whose
Request-Timeout has expired) cost the whole machine in CPU, and the report
says how much of the machine serving 0.9× capacity while refusing the rest
of the highest load would take. Then CPU-bound jobs (SHA-256 rounds, the
stand-in for receipt processing until it exists) are pushed through the
server's CPU lane as fast as possible, bounded vs unbounded, while
/healthz is probed over HTTP. The load generator shares the machine.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args, stdout, stderr); err != nil {
		return err
	}
	var loads []float64
	for _, s := range strings.Split(*loadList, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("--loads: %q is not a positive number", s)
		}
		loads = append(loads, f)
	}

	// Both servers run side by side and the runs alternate, off then on at
	// one load and on then off at the next, so that whatever else the
	// machine does lands on both alike and neither always runs second.
	type side struct {
		mode   string
		env    *benchEnv
		tenant string
		key    string
		pick   func(*rand.Rand) (string, string)
		runs   []lab.OverloadResult
		poster *lab.Poster
	}
	var sides []*side
	defer func() {
		for _, sd := range sides {
			sd.env.close()
		}
	}()
	for _, protect := range []bool{false, true} {
		sd := &side{mode: map[bool]string{false: "off", true: "on"}[protect]}
		env, err := startBenchEnv(ctx, *dbURL, *pool, stderr, func(c *app.Config) {
			if !protect {
				c.Admission, c.CPULaneSize, c.DBAcquireTimeout = false, -1, -1
			}
			if protect && *minLimit > 0 {
				c.AdmissionMinLimit = *minLimit
			}
			if protect && *tolerance > 0 {
				c.AdmissionTolerance = *tolerance
			}
			if protect && *ledgerMaxWait > 0 {
				c.LedgerMaxWait = *ledgerMaxWait
			}
			if protect && *queueWait > 0 {
				c.AdmissionQueueWait = *queueWait
			}
		})
		if err != nil {
			return err
		}
		sd.env = env
		sides = append(sides, sd)
		tenant, key, err := env.tenant(ctx)
		if err != nil {
			return err
		}
		sd.tenant, sd.key = tenant.ID, key.Secret
		fmt.Fprintf(stderr, "protection %s: seeding %d accounts\n", sd.mode, *accounts)
		ids, err := lab.SeedAccounts(ctx, env.main.DB.Pool, tenant.ID, "USD", *accounts, 1_000_000_000, false)
		if err != nil {
			return err
		}
		sd.pick = func(rng *rand.Rand) (string, string) {
			d := rng.IntN(len(ids))
			return ids[d], ids[(d+1+rng.IntN(len(ids)-1))%len(ids)]
		}
	}
	fmt.Fprintf(stdout, "holdfast bench overload: %s\n", machine(ctx, sides[0].env.main.DB.Pool))
	for _, sd := range sides {
		var err error
		if sd.poster, err = lab.NewPoster(sd.env.main.HTTP.URL(), *conns, 2**goodWithin); err != nil {
			return err
		}
		defer sd.poster.Close()
	}
	run := time.Now().UnixNano()
	// Before each run: the previous run's stragglers finish, both servers'
	// event logs catch up (they share the machine, so neither run pays for
	// the other's events), then both databases are vacuumed and checkpointed.
	settle := func() {
		time.Sleep(time.Second)
		for _, other := range sides {
			if err := other.env.main.DrainEvents(ctx); err != nil {
				fmt.Fprintf(stderr, "drain: %v\n", err)
			}
		}
		// Both databases: they share the cluster, and the side that ran
		// last left the dead rows autovacuum would otherwise clean up during
		// the next run, which is the other side's.
		for _, other := range sides {
			if err := lab.Settle(ctx, other.env.main.DB.Pool); err != nil {
				fmt.Fprintf(stderr, "settle: %v\n", err)
			}
		}
	}

	// Capacity, without protection: the loads are multiples of it.
	off := sides[0]
	// Capacity is the peak over several client counts: group commit's
	// throughput grows with concurrency (fuller batches), so one small
	// closed loop understates it (64 clients measured half of what 256 did).
	// Every loop has Idempotency-Keys of its own (run − 1, run − 2, …; the
	// loads use run + 1, …): each loop numbers its requests from 1, and a
	// loop that reused the previous one's keys with other bodies would get
	// 422s for most of its run and understate capacity.
	closed := func(name string, clients int, send lab.Send) lab.Result {
		return lab.ClosedLoop(ctx, name, clients, *capDuration, func(ctx context.Context, _ int, seq int64) (bool, error) {
			status, err := send(ctx, seq)
			return status == http.StatusCreated, err
		})
	}
	var capacity float64
	for k, c := range strings.Split(*capClients, ",") {
		clients, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || clients < 1 {
			return fmt.Errorf("--capacity-clients: %q is not a positive number", c)
		}
		send := lab.TransferSend(off.poster, off.key, run-int64(k+1), *goodWithin, off.pick)
		settle()
		fmt.Fprintf(stderr, "capacity: %d clients, closed loop, %v\n", clients, *capDuration)
		r := closed("capacity", clients, send)
		fmt.Fprintf(stderr, "  %.0f transfers/s, p50 %v, p99 %v\n", r.Throughput, r.P50, r.P99)
		capacity = max(capacity, r.Throughput)
	}
	if capacity < 1 {
		return errors.New("capacity run: no transfer succeeded")
	}
	// A closed loop waits on itself between requests; an open loop offering
	// more than the server does keeps every connection busy (it measured
	// ~4% more). Capacity is the higher of the two, so that "5×" is five
	// times what the server can really do. (At 3× the requests queued in
	// the generator outlived its 2 s timeout and the probe measured less.)
	settle()
	fmt.Fprintf(stderr, "capacity: open loop at 2× the closed-loop peak (%.0f/s), %v\n", 2*capacity, *capDuration)
	send := lab.TransferSend(off.poster, off.key, run-1000, *goodWithin, off.pick)
	sat := lab.RunOverload(ctx, "saturation", 2*capacity, *capDuration, *maxInFlight, *goodWithin, off.env.main.HTTP.URL()+"/healthz", send)
	saturated := float64(sat.Done) / capDuration.Seconds() // not OK: the 2xx of requests still outstanding at the end would inflate it by max-in-flight / duration
	fmt.Fprintf(stderr, "  %.0f transfers/s completed\n", saturated)
	capacity = max(capacity, saturated)
	// The protected server has served nothing yet (statement caches, pool,
	// event log cold) while the unprotected one was warmed by the capacity
	// runs: warm it the same way, or its first run (0.5×) pays for it.
	on := sides[1]
	settle()
	fmt.Fprintf(stderr, "protection on: warm-up, 64 clients, closed loop, %v\n", *capDuration)
	closed("warm-up", 64, lab.TransferSend(on.poster, on.key, run-2000, *goodWithin, on.pick))

	// What a transfer and a refusal cost the machine: the latency targets at
	// 5× need the refusals to fit beside the goodput (see lab.PrintCosts).
	var costs []lab.Cost
	if *costDuration > 0 {
		settle()
		fmt.Fprintf(stderr, "cost: transfers, 256 clients, closed loop, %v, then their events\n", *costDuration)
		created := func(status int) bool { return status == http.StatusCreated }
		t, err := lab.MeasureCost(ctx, "transfer (201; 256 clients)", 256, *costDuration,
			lab.TransferSend(on.poster, on.key, run-3000, *goodWithin, on.pick), created, on.env.main.DrainEvents)
		if err != nil {
			return err
		}
		settle()
		fmt.Fprintf(stderr, "cost: refusals (Request-Timeout: 0, dropped before any work), 256 clients, closed loop, %v\n", *costDuration)
		refused := func(status int) bool { return status == http.StatusServiceUnavailable }
		r, err := lab.MeasureCost(ctx, "refusal (503, expired deadline; 256 clients)", 256, *costDuration,
			lab.ExpiredSend(on.poster, on.key, run-4000, on.pick), refused, nil)
		if err != nil {
			return err
		}
		costs = []lab.Cost{t, r}
	}

	for i, load := range loads {
		order := sides // off, then on; at every other load on, then off
		if i%2 == 1 {
			order = []*side{sides[1], sides[0]}
		}
		for _, sd := range order {
			m := sd.env.main
			settle()
			rate := load * capacity
			name := strconv.FormatFloat(load, 'f', -1, 64) + "×"
			fmt.Fprintf(stderr, "protection %s: %s capacity, %.0f/s for %v\n", sd.mode, name, rate, *duration)
			send := lab.TransferSend(sd.poster, sd.key, run+int64(i+1), *goodWithin, sd.pick)
			r := lab.RunOverload(ctx, name, rate, *duration, *maxInFlight, *goodWithin, m.HTTP.URL()+"/healthz", send)
			limit := "none"
			if m.Admission != nil {
				limit = strconv.Itoa(m.Admission.Limiter(overload.Writes).Limit())
			}
			fmt.Fprintf(stderr, "  goodput %.0f/s, p99 %v, shed %.1f%%, healthz p99 %v, write limit at the end %s, shed so far: %s\n",
				r.Goodput, r.P99, 100*r.ShedShare(), r.HealthP99, limit, shedCounts(m))
			sd.runs = append(sd.runs, r)
		}
	}
	var cpu []lab.CPULoadResult
	if *cpuDuration > 0 {
		for _, sd := range sides {
			m := sd.env.main
			settle()
			name := "lane of " + strconv.Itoa(m.Lane.Size())
			if m.Lane.Size() == 0 {
				name = "unbounded"
			}
			fmt.Fprintf(stderr, "CPU lane %s: %d workers for %v\n", name, *cpuWorkers, *cpuDuration)
			cpu = append(cpu, lab.RunCPULoad(ctx, name, *cpuWorkers, *cpuIterations, *cpuDuration, 10*time.Millisecond, m.HTTP.URL()+"/healthz", m.Lane.Do))
		}
	}
	for _, sd := range sides {
		if err := verifyAfterBench(ctx, sd.env.main, sd.tenant, stdout); err != nil {
			return err
		}
	}
	lab.PrintOverload(stdout, capacity, sides[1].runs, sides[0].runs, cpu)
	if len(costs) == 2 {
		lab.PrintCosts(stdout, costs[0], costs[1], capacity, runtime.NumCPU(), loads[len(loads)-1], 0.9)
	}
	return nil
}

// shedCounts describes the server's shed counters so far, by reason.
func shedCounts(m *app.Main) string {
	families, err := m.Registry.Gather()
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, f := range families {
		if f.GetName() == "holdfast_ledger_shed_total" && len(f.GetMetric()) > 0 && m.Transfers() != nil {
			out = append(out, fmt.Sprintf("group-commit queue %.0f (admitted depth %d)", f.GetMetric()[0].GetCounter().GetValue(), m.Transfers().AdmitDepth()))
		}
		if f.GetName() != "holdfast_admission_shed_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			out = append(out, fmt.Sprintf("%s %.0f", strings.Join(labels, "/"), metric.GetCounter().GetValue()))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
