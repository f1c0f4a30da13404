package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/overload"
)

// OverloadOptions are the settings of `holdfast-lab bench overload`; its
// flags give their defaults, and a zero admission setting keeps serve's.
type OverloadOptions struct {
	DatabaseURL        string        // server to create the databases on; empty: a private cluster
	Duration           time.Duration // of each open-loop run
	CapacityDuration   time.Duration // of the closed loops that measure capacity
	CapacityClients    []int         // client counts of those closed loops (the peak counts)
	Loads              []float64     // open-loop rates as multiples of the capacity
	Accounts           int           // funded accounts the transfers move money between
	Pool               int           // database connections
	MaxInFlight        int           // the load generator's outstanding requests
	Conns              int           // the load generator's connections
	GoodWithin         time.Duration // a success within this of its intended send time counts towards goodput
	AdmissionMinLimit  int           // protection on: the server's --admission-min-limit
	AdmissionQueueWait time.Duration // protection on: the server's --admission-queue-wait
	AdmissionTolerance float64       // protection on: the server's --admission-tolerance
	LedgerMaxWait      time.Duration // protection on: the server's --ledger-max-wait
	CostDuration       time.Duration // of the closed loops that measure what a transfer and a refusal cost; 0 skips them
	CPUDuration        time.Duration // of each CPU-lane run; 0 skips them
	CPUWorkers         int           // goroutines submitting CPU-bound jobs to the lane
	CPUIterations      int           // SHA-256 rounds per CPU-bound job
	// Console runs both servers with an admin token, so each samples its
	// console's charts, and watches both consoles throughout as an open
	// browser would (load.WatchConsole).
	Console bool
}

// Overload runs the overload benchmark: Holdfast with protection off and
// on, side by side, each on a fresh database; capacity first, what a
// transfer and a refusal cost, then open loops at o.Loads × capacity, then
// CPU-bound jobs through the lane. It prints the tables to stdout, progress
// to stderr, and checks both ledgers' invariants.
func Overload(ctx context.Context, o OverloadOptions, stdout, stderr io.Writer) error {
	r := &overloadRun{o: o, stderr: stderr, run: time.Now().UnixNano()}
	defer r.close()
	if err := r.start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "holdfast-lab bench overload: %s\n", machine(ctx, r.off().env.main.DB.Pool))
	if o.Console {
		stop, err := r.watchConsoles(ctx, stdout)
		if err != nil {
			return err
		}
		defer stop()
	}
	for _, sd := range r.sides {
		var err error
		if sd.poster, err = load.NewPoster(sd.env.main.HTTP.URL(), o.Conns, 2*o.GoodWithin); err != nil {
			return err
		}
	}
	capacity, err := r.capacity(ctx)
	if err != nil {
		return err
	}
	r.warmUp(ctx)
	costs, err := r.costs(ctx)
	if err != nil {
		return err
	}
	r.loads(ctx, capacity)
	cpu := r.cpuLanes(ctx)
	for _, sd := range r.sides {
		if err := verifyAfterBench(ctx, sd.env.main, sd.tenant, stdout); err != nil {
			return err
		}
	}
	load.PrintOverload(stdout, capacity, r.on().runs, r.off().runs, cpu)
	if len(costs) == 2 {
		load.PrintCosts(stdout, costs[0], costs[1], capacity, runtime.NumCPU(), o.Loads[len(o.Loads)-1], 0.9)
	}
	return nil
}

// consoleToken is the admin token of the servers with --console.
const consoleToken = "bench-console-admin-token-0123456789abcdef"

// watchConsoles watches both servers' consoles until stop, which reports
// how many requests the watching made.
func (r *overloadRun) watchConsoles(ctx context.Context, stdout io.Writer) (stop func(), err error) {
	var watchers []*load.ConsoleWatcher
	for _, sd := range r.sides {
		w, err := load.WatchConsole(ctx, sd.env.main.HTTP.URL(), consoleToken)
		if err != nil {
			for _, w := range watchers {
				w.Stop()
			}
			return nil, err
		}
		watchers = append(watchers, w)
	}
	return func() {
		for i, w := range watchers {
			n, failed := w.Stop()
			fmt.Fprintf(stdout, "console of protection %s watched throughout: %d requests, %d failed\n", r.sides[i].mode, n, failed)
		}
	}, nil
}

// overloadSide is one of the two servers: protection off or on.
type overloadSide struct {
	mode        string // "off", "on"
	env         *benchEnv
	tenant, key string
	pick        func(*rand.Rand) (string, string)
	runs        []load.OverloadResult
	poster      *load.Poster
}

// overloadRun is one Overload. Both servers run side by side and the runs
// alternate, off then on at one load and on then off at the next, so that
// whatever else the machine does lands on both alike and neither always
// runs second.
type overloadRun struct {
	o      OverloadOptions
	stderr io.Writer
	run    int64 // numbers the runs' Idempotency-Keys apart from other runs'
	sides  []*overloadSide
}

func (r *overloadRun) off() *overloadSide { return r.sides[0] }
func (r *overloadRun) on() *overloadSide  { return r.sides[1] }

func (r *overloadRun) close() {
	for _, sd := range r.sides {
		if sd.poster != nil {
			sd.poster.Close()
		}
		sd.env.close()
	}
}

// start starts both servers, each with a tenant and its funded accounts.
func (r *overloadRun) start(ctx context.Context) error {
	for _, protect := range []bool{false, true} {
		sd := &overloadSide{mode: map[bool]string{false: "off", true: "on"}[protect]}
		env, err := startBenchEnv(ctx, r.o.DatabaseURL, r.o.Pool, r.stderr, func(c *app.Config) { r.protection(c, protect) })
		if err != nil {
			return err
		}
		sd.env = env
		r.sides = append(r.sides, sd)
		tenant, key, err := env.tenant(ctx)
		if err != nil {
			return err
		}
		sd.tenant, sd.key = tenant.ID, key.Secret
		fmt.Fprintf(r.stderr, "protection %s: seeding %d accounts\n", sd.mode, r.o.Accounts)
		ids, err := SeedAccounts(ctx, env.main.DB.Pool, tenant.ID, "USD", r.o.Accounts, 1_000_000_000, false)
		if err != nil {
			return err
		}
		sd.pick = func(rng *rand.Rand) (string, string) {
			d := rng.IntN(len(ids))
			return ids[d], ids[(d+1+rng.IntN(len(ids)-1))%len(ids)]
		}
	}
	return nil
}

// protection configures a server with protection on (the options' admission
// settings over serve's) or off (no admission control, an unbounded CPU
// lane, no database acquire timeout).
func (r *overloadRun) protection(c *app.Config, protect bool) {
	o := r.o
	if o.Console {
		c.AdminToken = consoleToken
	}
	if !protect {
		c.Admission, c.CPULaneSize, c.DBAcquireTimeout = false, -1, -1
		return
	}
	if o.AdmissionMinLimit > 0 {
		c.AdmissionMinLimit = o.AdmissionMinLimit
	}
	if o.AdmissionTolerance > 0 {
		c.AdmissionTolerance = o.AdmissionTolerance
	}
	if o.LedgerMaxWait > 0 {
		c.LedgerMaxWait = o.LedgerMaxWait
	}
	if o.AdmissionQueueWait > 0 {
		c.AdmissionQueueWait = o.AdmissionQueueWait
	}
}

// settle runs before each run: the previous run's stragglers finish, both
// servers' event logs catch up (they share the machine, so neither run
// pays for the other's events), then both databases are vacuumed and
// checkpointed: they share the cluster, and the side that ran last left
// the dead rows autovacuum would otherwise clean up during the next run,
// which is the other side's.
func (r *overloadRun) settle(ctx context.Context) {
	time.Sleep(time.Second)
	for _, sd := range r.sides {
		if err := sd.env.main.DrainEvents(ctx); err != nil {
			fmt.Fprintf(r.stderr, "drain: %v\n", err)
		}
	}
	for _, sd := range r.sides {
		if err := Settle(ctx, sd.env.main.DB.Pool); err != nil {
			fmt.Fprintf(r.stderr, "settle: %v\n", err)
		}
	}
}

// send returns a Send of transfers to the side's server, under the
// Idempotency-Keys of run number k.
func (r *overloadRun) send(sd *overloadSide, k int64) load.Send {
	return load.TransferSend(sd.poster, sd.key, r.run+k, r.o.GoodWithin, sd.pick)
}

// closed runs a closed loop of clients sending for the capacity runs'
// duration; a call succeeds on 201.
func (r *overloadRun) closed(ctx context.Context, name string, clients int, send load.Send) load.Result {
	return load.ClosedLoop(ctx, name, clients, r.o.CapacityDuration, func(ctx context.Context, _ int, seq int64) (bool, error) {
		status, err := send(ctx, seq)
		return status == http.StatusCreated, err
	})
}

// capacity measures the capacity of POST /v1/transfers without protection:
// the loads are multiples of it. It is the peak over several client
// counts (group commit's throughput grows with concurrency: fuller
// batches, so one small closed loop understates it), or what an open loop
// at twice that peak gets done, if more.
func (r *overloadRun) capacity(ctx context.Context) (float64, error) {
	off, d := r.off(), r.o.CapacityDuration
	var capacity float64
	// Every loop has Idempotency-Keys of its own (run − 1, run − 2, …; the
	// loads use run + 1, …): each loop numbers its requests from 1, and a
	// loop that reused the previous one's keys with other bodies would get
	// 422s for most of its run and understate capacity.
	for k, clients := range r.o.CapacityClients {
		send := r.send(off, -int64(k+1))
		r.settle(ctx)
		fmt.Fprintf(r.stderr, "capacity: %d clients, closed loop, %v\n", clients, d)
		res := r.closed(ctx, "capacity", clients, send)
		fmt.Fprintf(r.stderr, "  %.0f transfers/s, p50 %v, p99 %v\n", res.Throughput, res.P50, res.P99)
		capacity = max(capacity, res.Throughput)
	}
	if capacity < 1 {
		return 0, errors.New("capacity run: no transfer succeeded")
	}
	// A closed loop waits on itself between requests; an open loop offering
	// more than the server does keeps every connection busy. Capacity is
	// the higher of the two, so that "5×" is five times what the server
	// can really do.
	r.settle(ctx)
	fmt.Fprintf(r.stderr, "capacity: open loop at 2× the closed-loop peak (%.0f/s), %v\n", 2*capacity, d)
	sat := load.RunOverload(ctx, "saturation", 2*capacity, d, r.o.MaxInFlight, r.o.GoodWithin, off.env.main.HTTP.URL()+"/healthz", r.send(off, -1000))
	saturated := float64(sat.Done) / d.Seconds() // not OK: the 2xx of requests still outstanding at the end would inflate it by max-in-flight / duration
	fmt.Fprintf(r.stderr, "  %.0f transfers/s completed\n", saturated)
	return max(capacity, saturated), nil
}

// warmUp warms the protected server, which has served nothing yet
// (statement caches, pool, event log cold) while the unprotected one was
// warmed by the capacity runs; else its first run (0.5×) pays for it.
func (r *overloadRun) warmUp(ctx context.Context) {
	r.settle(ctx)
	fmt.Fprintf(r.stderr, "protection on: warm-up, 64 clients, closed loop, %v\n", r.o.CapacityDuration)
	r.closed(ctx, "warm-up", 64, r.send(r.on(), -2000))
}

// costs measures what a transfer and the server's cheapest refusal cost
// the machine: the latency targets at 5× need the refusals to fit beside
// the goodput (see load.PrintCosts). None with a CostDuration of 0.
func (r *overloadRun) costs(ctx context.Context) ([]load.Cost, error) {
	d := r.o.CostDuration
	if d <= 0 {
		return nil, nil
	}
	on := r.on()
	r.settle(ctx)
	fmt.Fprintf(r.stderr, "cost: transfers, 256 clients, closed loop, %v, then their events\n", d)
	created := func(status int) bool { return status == http.StatusCreated }
	t, err := load.MeasureCost(ctx, "transfer (201; 256 clients)", 256, d, r.send(on, -3000), created, on.env.main.DrainEvents)
	if err != nil {
		return nil, err
	}
	r.settle(ctx)
	fmt.Fprintf(r.stderr, "cost: refusals (Request-Timeout: 0, dropped before any work), 256 clients, closed loop, %v\n", d)
	refused := func(status int) bool { return status == http.StatusServiceUnavailable }
	rf, err := load.MeasureCost(ctx, "refusal (503, expired deadline; 256 clients)", 256, d,
		load.ExpiredSend(on.poster, on.key, r.run-4000, on.pick), refused, nil)
	if err != nil {
		return nil, err
	}
	return []load.Cost{t, rf}, nil
}

// loads runs the open loops at each load × capacity, both sides at each,
// in alternating order.
func (r *overloadRun) loads(ctx context.Context, capacity float64) {
	for i, ld := range r.o.Loads {
		order := r.sides // off, then on; at every other load on, then off
		if i%2 == 1 {
			order = []*overloadSide{r.on(), r.off()}
		}
		for _, sd := range order {
			m := sd.env.main
			r.settle(ctx)
			rate := ld * capacity
			name := strconv.FormatFloat(ld, 'f', -1, 64) + "×"
			fmt.Fprintf(r.stderr, "protection %s: %s capacity, %.0f/s for %v\n", sd.mode, name, rate, r.o.Duration)
			res := load.RunOverload(ctx, name, rate, r.o.Duration, r.o.MaxInFlight, r.o.GoodWithin, m.HTTP.URL()+"/healthz", r.send(sd, int64(i+1)))
			limit := "none"
			if m.Admission != nil {
				limit = strconv.Itoa(m.Admission.Limiter(overload.Writes).Limit())
			}
			fmt.Fprintf(r.stderr, "  goodput %.0f/s, p99 %v, shed %.1f%%, healthz p99 %v, write limit at the end %s, shed so far: %s\n",
				res.Goodput, res.P99, 100*res.ShedShare(), res.HealthP99, limit, shedCounts(m))
			sd.runs = append(sd.runs, res)
		}
	}
}

// cpuLanes pushes CPU-bound jobs through each server's CPU lane, bounded
// (protection on) and unbounded (off), while /healthz is probed. None with
// a CPUDuration of 0.
func (r *overloadRun) cpuLanes(ctx context.Context) []load.CPUJobsResult {
	if r.o.CPUDuration <= 0 {
		return nil
	}
	var cpu []load.CPUJobsResult
	for _, sd := range r.sides {
		m := sd.env.main
		r.settle(ctx)
		name := "lane of " + strconv.Itoa(m.Lane.Size())
		if m.Lane.Size() == 0 {
			name = "unbounded"
		}
		fmt.Fprintf(r.stderr, "CPU lane %s: %d workers for %v\n", name, r.o.CPUWorkers, r.o.CPUDuration)
		cpu = append(cpu, load.RunCPUJobs(ctx, name, r.o.CPUWorkers, r.o.CPUIterations, r.o.CPUDuration, 10*time.Millisecond, m.HTTP.URL()+"/healthz", m.Lane.Do))
	}
	return cpu
}
