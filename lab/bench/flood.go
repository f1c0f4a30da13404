package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/postgres"
)

// FloodOptions are the settings of `holdfast-lab bench events --flood`;
// its flags give their defaults.
type FloodOptions struct {
	DatabaseURL   string        // server to create the database on; empty: a private cluster
	Phase         time.Duration // length of each phase, without and with the flood
	Quota         int64         // client events per second per tenant (--events-quota over a 1s period)
	TransferRate  float64       // the other tenant's transfers per second
	EventRate     float64       // the other tenant's POST /v1/events per second, EventBatch events each
	EventBatch    int           // events per request of the other tenant
	FloodMultiple float64       // the flooding tenant's rate, in multiples of its quota
}

// floodPhase is what one phase measured.
type floodPhase struct {
	name                 string
	transfers, events    load.Result
	maxLag               int64 // the groups' largest lag seen, in messages
	floodOK, floodRefuse int64 // the flooder's requests answered 202 and 429
}

// Flood measures whether one tenant flooding POST /v1/events at
// FloodMultiple × its quota affects another tenant: the other's transfers
// and events p99, and the consumer groups' lag, in a phase without the
// flood and one with it, in one run.
func Flood(ctx context.Context, o FloodOptions, stdout, stderr io.Writer) error {
	env, err := startBenchEnv(ctx, o.DatabaseURL, 16, stderr, func(c *app.Config) {
		c.Events.Quota, c.Events.QuotaBytes, c.Events.QuotaPeriod = o.Quota, 64<<20, time.Second
	})
	if err != nil {
		return err
	}
	defer env.close()
	m := env.main
	_, victimKey, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	_, floodKey, err := env.tenant(ctx)
	if err != nil {
		return err
	}
	accounts := postgres.NewAccountService(m.DB)
	var ids [8]string
	for i := range ids {
		a, err := accounts.CreateAccount(ctx, victimKey.TenantID, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true}, nil)
		if err != nil {
			return err
		}
		ids[i] = a.ID
	}
	poster, err := load.NewPoster(m.HTTP.URL(), 64, 10*time.Second)
	if err != nil {
		return err
	}
	defer poster.Close()
	victim := AdminTarget(m.HTTP.URL(), victimKey.Secret, m.Consumers(), m.DB.Pool)
	flooder := AdminTarget(m.HTTP.URL(), floodKey.Secret, m.Consumers(), m.DB.Pool)
	pick := func(r *rand.Rand) (string, string) {
		i := r.IntN(len(ids))
		return ids[i], ids[(i+1+r.IntN(len(ids)-1))%len(ids)]
	}

	fmt.Fprintf(stdout, "holdfast-lab bench events --flood — %s\n", machine(ctx, m.DB.Pool))
	fmt.Fprintf(stdout, "quota %d events/s per tenant; the other tenant: %.0f transfers/s and %.0f × %d events/s; flood at %.0f× the quota\n\n",
		o.Quota, o.TransferRate, o.EventRate, o.EventBatch, o.FloodMultiple)
	var phases []floodPhase
	for i, flood := range []bool{false, true} {
		fmt.Fprintf(stderr, "phase %d of 2 (flood %v), %s\n", i+1, flood, o.Phase)
		p := runFloodPhase(ctx, o, flood, poster, victim, flooder, int64(i+1), pick)
		phases = append(phases, p)
	}
	printFlood(stdout, phases)
	return nil
}

// runFloodPhase runs the other tenant's load for o.Phase, with or without
// the flood beside it, sampling the groups' lag.
func runFloodPhase(ctx context.Context, o FloodOptions, flood bool, poster *load.Poster, victim, flooder *EventTarget,
	run int64, pick func(*rand.Rand) (string, string)) floodPhase {
	p := floodPhase{name: "without flood"}
	if flood {
		p.name = "with flood"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var maxLag atomic.Int64
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if lag, err := victim.Lag(ctx); err == nil && lag > maxLag.Load() {
				maxLag.Store(lag)
			}
		}
	}()
	var ok, refused atomic.Int64
	if flood {
		floodBody := eventBody(500)
		rate := o.FloodMultiple * float64(o.Quota) / 500
		go load.OpenLoop(ctx, "flood", rate, o.Phase, 256, func(ctx context.Context, _ int, _ int64) (bool, error) {
			_, status, err := flooder.postEvents(ctx, floodBody)
			switch status {
			case http.StatusAccepted:
				ok.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			}
			return status == http.StatusAccepted, err
		})
	}
	eventsBody := eventBody(o.EventBatch)
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.transfers = load.OpenLoop(ctx, "transfers", o.TransferRate, o.Phase, 256, load.TransferCall(poster, victim.Key, run, pick))
	}()
	go func() {
		defer wg.Done()
		p.events = load.OpenLoop(ctx, "events", o.EventRate, o.Phase, 256, func(ctx context.Context, _ int, _ int64) (bool, error) {
			n, err := victim.PostEvents(ctx, eventsBody)
			return n > 0, err
		})
	}()
	wg.Wait()
	p.maxLag, p.floodOK, p.floodRefuse = maxLag.Load(), ok.Load(), refused.Load()
	return p
}

func printFlood(w io.Writer, phases []floodPhase) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\ttransfers ok\ttransfers p99\tevents ok\tevents p99\tmax group lag (msgs)\tflood 202\tflood 429\t")
	for _, p := range phases {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d/%d\t%s\t%d\t%d\t%d\t\n", p.name, p.transfers.OK, p.transfers.Sent, p.transfers.P99.Round(10*time.Microsecond),
			p.events.OK, p.events.Sent, p.events.P99.Round(10*time.Microsecond), p.maxLag, p.floodOK, p.floodRefuse)
	}
	tw.Flush()
	if len(phases) == 2 && phases[0].transfers.P99 > 0 && phases[0].events.P99 > 0 {
		fmt.Fprintf(w, "\nwith flood / without: transfers p99 %.2f×, events p99 %.2f× (target ≤ 1.5×)\n",
			float64(phases[1].transfers.P99)/float64(phases[0].transfers.P99), float64(phases[1].events.P99)/float64(phases[0].events.P99))
	}
}
