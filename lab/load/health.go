package load

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// HealthStats are the /healthz probes of a run.
type HealthStats struct {
	Probes, Failed int64
	P50, P99, Max  time.Duration
}

// probeHealth GETs url every interval, each probe on a schedule whatever
// the previous one does (open loop, timed from its tick, 5 s timeout), on a
// client of its own, until the returned function is called; that function
// returns the latencies (see HealthTimeline for every probe's).
func probeHealth(ctx context.Context, url string, interval time.Duration) func() HealthStats {
	return StartHealthTimeline(ctx, url, interval).Stop
}

// HealthSample is one /healthz probe: when it was scheduled, since the
// probing began, and how long the answer took (0 when it failed).
type HealthSample struct {
	AtMS      int64   `json:"at_ms"`
	LatencyMS float64 `json:"latency_ms"`
	OK        bool    `json:"ok"`
}

// HealthTimeline probes /healthz on a schedule, keeping every probe's time
// and latency (probeHealth returns only their figures).
type HealthTimeline struct {
	mu      sync.Mutex
	Samples []HealthSample
	stop    func()
}

// StartHealthTimeline GETs url every interval, each probe timed from its
// scheduled tick whatever the previous one does (5 s timeout, a client of
// its own), until Stop.
func StartHealthTimeline(ctx context.Context, url string, interval time.Duration) *HealthTimeline {
	h := &HealthTimeline{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case t := <-tick.C:
				wg.Go(func() {
					s := HealthSample{AtMS: t.Sub(start).Milliseconds()}
					req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", url, nil)
					if resp, err := client.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							s.OK, s.LatencyMS = true, float64(time.Since(t))/1e6
						}
					}
					h.mu.Lock()
					h.Samples = append(h.Samples, s)
					h.mu.Unlock()
				})
			}
		}
	}()
	h.stop = func() {
		cancel()
		<-done
		wg.Wait()
		client.CloseIdleConnections()
	}
	return h
}

// Stop ends the probing, sorts Samples by time and returns the probes'
// figures.
func (h *HealthTimeline) Stop() HealthStats {
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	slices.SortFunc(h.Samples, func(a, b HealthSample) int { return cmp.Compare(a.AtMS, b.AtMS) })
	return SummarizeHealth(h.Samples)
}

// SummarizeHealth returns the figures of probes: how many, how many
// failed, and the latencies of the others.
func SummarizeHealth(samples []HealthSample) HealthStats {
	var lat []time.Duration
	var s HealthStats
	for _, p := range samples {
		s.Probes++
		if !p.OK {
			s.Failed++
			continue
		}
		lat = append(lat, time.Duration(p.LatencyMS*1e6))
	}
	sortDurations(lat)
	s.P50, s.P99 = quantile(lat, 0.5), quantile(lat, 0.99)
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	return s
}
