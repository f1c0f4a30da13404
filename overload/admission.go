package overload

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Class is a kind of request with its own concurrency limit, so that a
// flood of one kind cannot take the capacity of the others.
type Class uint8

// Route classes.
const (
	Writes  Class = iota // POST, PUT, PATCH, DELETE that change the ledger
	Reads                // GET
	Exports              // streaming exports: admitted by their own fixed slots, not here
	Uploads              // large request bodies (receipts)
	Auth                 // database lookups of API keys not in the authentication cache
	numClasses
)

var classNames = [numClasses]string{"writes", "reads", "exports", "uploads", "auth"}

// String returns the class's metric label.
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// Shed reasons, the label of holdfast_admission_shed_total.
const (
	ReasonLimit        = "limit"         // the limit and the queue were full
	ReasonQueueTimeout = "queue-timeout" // waited the CoDel timeout in vain
	ReasonExpired      = "expired"       // the request's deadline had passed (or its client left)
	ReasonRateLimited  = "rate-limited"  // the tenant's rate limit (counted by the HTTP layer)
	// ReasonAuthThrottled: a client address that failed to authenticate
	// too often (counted by the HTTP layer, in the Auth class).
	ReasonAuthThrottled = "auth-throttled"
)

// AdmissionConfig configures admission control.
type AdmissionConfig struct {
	// Limiter configures the limit of every class but Exports.
	Limiter LimiterConfig
	// WriteMinLimit, if positive, is the Writes class's floor instead of
	// Limiter.MinLimit. Writes go through group commit, whose latency rises
	// with concurrency while its throughput rises too (fuller batches): a
	// latency-led limit would settle below the concurrency group commit
	// needs (measured: a write limit of 64 held goodput at 5,209/s where
	// no limit gave 11,580/s). The group-commit queue sheds writes by its
	// own delay instead (postgres.WriterConfig.MaxWait); the write limit
	// only bounds how many are in flight.
	WriteMinLimit int
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Admission is adaptive admission control by route class. Exports have no
// adaptive limit: a download lasts as long as the client reads, which says
// nothing about the service's load, so they are capped by a fixed number
// of export slots instead (see package export).
type Admission struct {
	limiters [numClasses]*Limiter
	shed     *prometheus.CounterVec
}

// NewAdmission returns admission control and registers its metrics:
// holdfast_admission_inflight, holdfast_admission_limit,
// holdfast_admission_shed_total{reason} and
// holdfast_admission_queue_wait_seconds, each by class. It returns an error
// for an invalid configuration or a registration conflict.
func NewAdmission(cfg AdmissionConfig) (*Admission, error) {
	a := &Admission{shed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_admission_shed_total", Help: "Requests refused to protect the service, by class and reason.",
	}, []string{"class", "reason"})}
	wait := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "holdfast_admission_queue_wait_seconds", Help: "Time requests waited in the admission queue, by class.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"class"})
	collectors := []prometheus.Collector{a.shed, wait}
	for c := range numClasses {
		if c == Exports {
			continue
		}
		lc := cfg.Limiter
		if c == Writes && cfg.WriteMinLimit > 0 {
			lc.MinLimit = cfg.WriteMinLimit
			lc.InitialLimit = max(lc.InitialLimit, cfg.WriteMinLimit)
			lc.MaxLimit = max(lc.MaxLimit, cfg.WriteMinLimit)
		}
		l, err := NewLimiter(lc)
		if err != nil {
			return nil, err
		}
		name := c.String()
		l.shedLimit = a.shed.WithLabelValues(name, ReasonLimit)
		l.shedTimeout = a.shed.WithLabelValues(name, ReasonQueueTimeout)
		l.shedExpired = a.shed.WithLabelValues(name, ReasonExpired)
		l.wait = wait.WithLabelValues(name)
		labels := prometheus.Labels{"class": name}
		collectors = append(collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_admission_inflight",
				Help: "Requests admitted and not finished, by class.", ConstLabels: labels},
				func() float64 { return float64(l.InFlight()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_admission_limit",
				Help: "Current adaptive concurrency limit, by class.", ConstLabels: labels},
				func() float64 { return float64(l.Limit()) }))
		a.limiters[c] = l
	}
	if cfg.Registerer != nil {
		for _, c := range collectors {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// Limiter returns the class's limiter; nil for Exports and for a nil
// Admission (a nil *Limiter admits everything).
func (a *Admission) Limiter(c Class) *Limiter {
	if a == nil || c >= numClasses {
		return nil
	}
	return a.limiters[c]
}

// Acquire admits a request of class c or refuses it (see Limiter.Acquire).
// A nil Admission admits everything.
func (a *Admission) Acquire(ctx context.Context, c Class) (Permit, error) {
	return a.Limiter(c).Acquire(ctx)
}

// CountShed counts a request of class c refused before admission (an
// expired deadline, a rate limit). A nil Admission counts nothing.
func (a *Admission) CountShed(c Class, reason string) {
	if a != nil {
		a.shed.WithLabelValues(c.String(), reason).Inc()
	}
}

// Shed returns how many requests have been refused, by class and reason
// ("writes/limit", …): the counts of holdfast_admission_shed_total, for
// reports. A nil Admission has refused none.
func (a *Admission) Shed() map[string]int64 {
	out := map[string]int64{}
	if a == nil {
		return out
	}
	ch := make(chan prometheus.Metric)
	go func() { a.shed.Collect(ch); close(ch) }()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		var class, reason string
		for _, l := range d.GetLabel() {
			switch l.GetName() {
			case "class":
				class = l.GetValue()
			case "reason":
				reason = l.GetValue()
			}
		}
		out[class+"/"+reason] = int64(d.GetCounter().GetValue())
	}
	return out
}
