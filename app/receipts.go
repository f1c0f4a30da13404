package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast/blob"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// ReceiptConfig configures the receipt pipeline.
type ReceiptConfig struct {
	Cap           int           // --receipt-cap: receipt jobs in flight across every replica; default 50
	Workers       int           // --receipt-workers: jobs this replica works on at once; 0: the cap
	AckWait       time.Duration // --receipt-visibility-timeout: redelivery of a job whose worker died; default 60s
	MaxDeliveries int           // --receipt-max-deliveries: tries before the dead-letter stream; default 5
	BackoffBase   time.Duration // --receipt-backoff: first retry delay, doubling; default 1s
	DBConns       int           // --receipt-db-conns: this replica's workers' database connections; default 4
	GCInterval    time.Duration // --blob-gc-interval: pause between sweeps of unreferenced blobs; default 1h, 0 off
	GCGrace       time.Duration // --blob-gc-grace: a blob stored within it is never swept; default 24h
	QuotaMiB      int           // --receipt-quota-mib: a tenant's stored receipt images; default 10240 (10 GiB), 0 none
	NoWorkers     bool          // run no workers in this process (benchmarks of another consumer); no flag
}

func defaultReceiptConfig() ReceiptConfig {
	return ReceiptConfig{Cap: 50, AckWait: 60 * time.Second, MaxDeliveries: 5, BackoffBase: time.Second, DBConns: 4,
		GCInterval: time.Hour, GCGrace: 24 * time.Hour, QuotaMiB: receipts.DefaultQuota >> 20}
}

// Pipeline returns the receipts package's configuration.
func (c ReceiptConfig) Pipeline() receipts.Config {
	return receipts.Config{Cap: c.Cap, Workers: c.Workers, AckWait: c.AckWait, MaxDeliveries: c.MaxDeliveries, BackoffBase: c.BackoffBase}
}

// receiptPipeline is the running receipt pipeline of a Main.
type receiptPipeline struct {
	db     *postgres.DB // the workers' own pool
	worker *receipts.Worker
	blobs  *blob.Store
	gc     *receipts.BlobGC
}

// openReceipts starts the blob store, the workers (on a pool of their own)
// and sets the receipt services on the HTTP server. It runs after the
// event log, whose relay carries the jobs.
func (m *Main) openReceipts(ctx context.Context, dbURL string) error {
	c := m.Config.Receipts
	cfg := c.Pipeline()
	if c.GCInterval > 0 && c.GCGrace < 10*c.AckWait {
		return fmt.Errorf("--blob-gc-grace %v is shorter than 10 × --receipt-visibility-timeout (%v): a job's variants could be swept before its receipt refers to them", c.GCGrace, 10*c.AckWait)
	}
	blobs, err := blob.New(filepath.Join(m.Config.DataDir, "blobs"))
	if err != nil {
		return err
	}
	p := &receiptPipeline{}
	m.receipts = p
	// Workers wait for a connection of their pool (the cap bounds them);
	// failing fast is for requests.
	p.db, err = postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: int32(c.DBConns), AcquireTimeout: -1})
	if err != nil {
		return err
	}
	workerStore := postgres.NewReceiptStore(p.db)
	metrics, err := receipts.NewMetrics(m.Registry)
	if err != nil {
		return err
	}
	p.worker, err = receipts.NewWorker(m.NATS.JS, workerStore, blobs, receipts.WorkerConfig{
		Config: cfg, Lane: m.Lane, Logger: m.Logger, Metrics: metrics, Tenants: workerStore.TenantName,
	})
	if err != nil {
		return err
	}
	if !c.NoWorkers {
		if err := p.worker.Start(ctx); err != nil {
			return err
		}
	}
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(receipts.Collector(m.NATS.JS, cfg, p.db), 0)) // asks JetStream
	apiStore := postgres.NewReceiptStore(m.DB)
	quota := int64(c.QuotaMiB) << 20
	if c.QuotaMiB <= 0 {
		quota = -1 // none
	}
	m.HTTP.ReceiptService = receipts.NewService(apiStore, blobs, receipts.ServiceConfig{Quota: quota})
	m.HTTP.DeadLetterService = receipts.NewDeadLetters(apiStore, m.NATS.JS, cfg)
	p.blobs = blobs
	if c.GCInterval > 0 {
		p.gc, err = receipts.NewBlobGC(workerStore, blobs, receipts.BlobGCConfig{
			Interval: c.GCInterval, Grace: c.GCGrace, Logger: m.Logger, Registerer: m.Registry})
		if err != nil {
			return err
		}
		p.gc.Start(ctx)
	}
	return nil
}

// closeReceipts stops the workers after the jobs in hand, then their pool.
func (m *Main) closeReceipts() {
	if m.receipts == nil {
		return
	}
	if m.receipts.gc != nil {
		m.receipts.gc.Stop()
	}
	if m.receipts.worker != nil {
		m.receipts.worker.Stop()
	}
	if m.receipts.db != nil {
		m.receipts.db.Close()
	}
}
