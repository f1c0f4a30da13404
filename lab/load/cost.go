package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/holdfast/holdfast/lab/report"
)

// Cost is what one kind of request costs the whole machine: the busy CPU
// time of every process on it (load generator, server, database, event
// consumers; from /proc/stat) divided by the requests answered as wanted.
type Cost struct {
	Name     string
	Answered int64         // requests answered with the wanted status
	Busy     time.Duration // CPU time the machine was busy meanwhile (both cores' sum)
	Result   Result
}

// PerRequest returns the busy CPU time per answered request.
func (c Cost) PerRequest() time.Duration {
	if c.Answered == 0 {
		return 0
	}
	return c.Busy / time.Duration(c.Answered)
}

// userHZ is the unit of /proc/stat's counters (USER_HZ, 100 on Linux).
const userHZ = 100

// MeasureCost runs a closed loop of clients calling send for d, then
// after (if not nil: the work the requests left behind, such as events to
// apply), and returns the machine's busy CPU time over both per request
// answered with a status want accepts. The machine should be otherwise idle.
func MeasureCost(ctx context.Context, name string, clients int, d time.Duration, send Send, want func(status int) bool, after func(context.Context) error) (Cost, error) {
	before, err := ReadCPU()
	if err != nil {
		return Cost{}, fmt.Errorf("measure cost: %w", err)
	}
	res := ClosedLoop(ctx, name, clients, d, func(ctx context.Context, _ int, seq int64) (bool, error) {
		status, err := send(ctx, seq)
		return err == nil && want(status), err
	})
	if after != nil {
		if err := after(ctx); err != nil {
			return Cost{}, fmt.Errorf("measure cost: %w", err)
		}
	}
	end, err := ReadCPU()
	if err != nil {
		return Cost{}, fmt.Errorf("measure cost: %w", err)
	}
	if res.OK == 0 {
		return Cost{}, errors.New("measure cost: no request was answered as wanted")
	}
	return Cost{Name: name, Answered: res.OK, Busy: time.Duration(end.busy-before.busy) * time.Second / userHZ, Result: res}, nil
}

// PrintCosts writes what a transfer and a refusal cost the machine, and
// how many cores a load of overload × capacity (transfers/s) would take if
// the server kept serving keep × capacity and refused the rest as it came:
// more than the machine has means refusals and goodput cannot both happen
// on it, wherever the refusals are made.
func PrintCosts(w io.Writer, transfer, refusal Cost, capacity float64, cores int, overload, keep float64) {
	t, r := transfer.PerRequest(), refusal.PerRequest()
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
	fmt.Fprintf(w, "\nwhat a request costs this machine (busy CPU of every process, load generator included, ÷ requests answered):\n")
	fmt.Fprintf(w, "  %-46s %8s  (%d in %.1f s, its events applied)\n", transfer.Name, us(t), transfer.Answered, transfer.Result.Elapsed.Seconds())
	fmt.Fprintf(w, "  %-46s %8s  (%d in %.1f s) = %.1f%% of a transfer\n", refusal.Name, us(r), refusal.Answered, refusal.Result.Elapsed.Seconds(), 100*report.Ratio(float64(r), float64(t)))
	if cores < 1 || capacity <= 0 || overload <= keep {
		return
	}
	served := keep * capacity * t.Seconds()
	refused := (overload - keep) * capacity * r.Seconds()
	fmt.Fprintf(w, "  at %g× capacity, serving %.2f× (%.0f/s) and refusing the other %.0f/s as they come needs %.2f cores of the machine's %d (%.2f for the transfers, %.2f for the refusals)",
		overload, keep, keep*capacity, (overload-keep)*capacity, served+refused, cores, served, refused)
	if room := float64(cores) - served; room > 0 {
		fmt.Fprintf(w, "; it fits if a refusal costs at most %s\n", us(time.Duration(room/((overload-keep)*capacity)*1e9)))
	} else {
		fmt.Fprintln(w, "; the transfers alone fill it")
	}
}
