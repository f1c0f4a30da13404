package receipts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/internal/lifecycle"
)

// BlobGCConfig configures the deletion of blobs no receipt refers to.
type BlobGCConfig struct {
	// Interval is the pause between sweeps; the first runs one Interval
	// after Start. Default 1h.
	Interval time.Duration
	// Grace: a blob stored or stored again within it is kept, referred to
	// or not. It must exceed the longest time between storing a blob and
	// committing the receipt that refers to it: an upload's request, or a
	// job's processing (bounded by 10 × the visibility timeout). Default 24h.
	Grace time.Duration
	// Logger receives each sweep's result. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the collector's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// BlobGC deletes the blobs that no receipt refers to any more: the
// originals and variants of receipts replaced by a new upload. Content is
// stored once (blob keys are hashes), so one blob may serve several
// receipts; it goes only when none refers to it. It is safe to run in every
// replica sharing the blob store (directory or bucket).
type BlobGC struct {
	store   BlobRefs
	blobs   BlobStore
	cfg     BlobGCConfig
	deleted prometheus.Counter
	bytes   prometheus.Counter
	run     lifecycle.Runner
}

// NewBlobGC returns a collector of blobs; call Start to run it.
func NewBlobGC(store BlobRefs, blobs BlobStore, cfg BlobGCConfig) (*BlobGC, error) {
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour
	}
	if cfg.Grace == 0 {
		cfg.Grace = 24 * time.Hour
	}
	if cfg.Interval < 0 || cfg.Grace < 0 {
		return nil, errors.New("receipts: BlobGCConfig durations must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &BlobGC{store: store, blobs: blobs, cfg: cfg,
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_blob_gc_deleted_total",
			Help: "Blobs deleted because no receipt refers to them."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_blob_gc_deleted_bytes_total",
			Help: "Bytes of the blobs deleted because no receipt refers to them."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{g.deleted, g.bytes} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// Sweep deletes now the blobs no receipt refers to that were last stored
// more than the grace period ago.
func (g *BlobGC) Sweep(ctx context.Context) (blob.SweepStats, error) {
	st, err := g.blobs.Sweep(ctx, time.Now().Add(-g.cfg.Grace), g.store.BlobsInUse)
	g.deleted.Add(float64(st.Deleted))
	g.bytes.Add(float64(st.Bytes))
	return st, err
}

// Start runs sweeps in the background until Stop; call it once.
func (g *BlobGC) Start(ctx context.Context) {
	ctx = g.run.Start(ctx)
	g.run.Go(func() {
		for lifecycle.Sleep(ctx, g.cfg.Interval) {
			st, err := g.Sweep(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				g.cfg.Logger.Error("blob gc", "err", err, "deleted", st.Deleted)
			case st.Deleted > 0:
				g.cfg.Logger.Info("blob gc", "checked", st.Checked, "deleted", st.Deleted, "bytes", st.Bytes)
			}
		}
	})
}

// Stop ends the background sweeps and waits for the one running, if any.
// Idempotent, and safe before Start.
func (g *BlobGC) Stop() { g.run.Stop() }
