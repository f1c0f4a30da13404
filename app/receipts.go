package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/blob"
	"github.com/holdfast/holdfast/blob/s3"
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
	BlobURL       string        // --blob-url: s3://bucket?endpoint=…&region=…; default "": the data directory's blobs/
	BlobAccessKey string        // --blob-access-key: the bucket's access key; no default
	BlobSecretKey string        // --blob-secret-key: the bucket's secret key; no default, never logged
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
	db      *postgres.DB // the workers' own pool
	intake  *postgres.DB // the intake batches' own pool
	service *receipts.Service
	worker  *receipts.Worker
	blobs   receipts.BlobStore
	gc      *receipts.BlobGC
}

// openReceipts starts the blob store, the workers (on a pool of their own)
// and sets the receipt services on the HTTP server. It runs after the
// event log, whose relay carries the jobs.
func (m *Main) openReceipts(ctx context.Context, dbURL string) error {
	c := m.Config.Receipts
	cfg := m.jobsPipeline(m.events.stream.Replicas)
	if c.GCInterval > 0 && c.GCGrace < 10*c.AckWait {
		return fmt.Errorf("--blob-gc-grace %v is shorter than 10 × --receipt-visibility-timeout (%v): a job's variants could be swept before its receipt refers to them", c.GCGrace, 10*c.AckWait)
	}
	p := &receiptPipeline{}
	m.receipts = p
	var err error
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
	apiStore := postgres.NewReceiptStore(m.DB)
	quota := int64(c.QuotaMiB) << 20
	if c.QuotaMiB <= 0 {
		quota = -1 // none
	}
	// Intake batches have connections of their own, a committer each, so
	// that they never queue behind the requests they answer.
	intake := receipts.IntakeConfig{Registerer: m.Registry}.WithDefaults()
	p.intake, err = postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: int32(intake.Committers), AcquireTimeout: -1})
	if err != nil {
		return err
	}
	blobs, err := m.openBlobs(ctx, p.intake)
	if err != nil {
		return err
	}
	p.service, err = receipts.NewService(intakeStore{apiStore, postgres.NewReceiptStore(p.intake)}, blobs,
		receipts.ServiceConfig{Quota: quota, Intake: intake})
	if err != nil {
		return err
	}
	p.service.Start(ctx)
	// The workers yield the CPU to intake while uploads arrive.
	p.worker, err = receipts.NewWorker(m.NATS.JS, workerStore, blobs, receipts.WorkerConfig{
		Config: cfg, Lane: m.Lane, Logger: m.Logger, Metrics: metrics, Tenants: workerStore.TenantName, Yield: p.service.Busy,
	})
	if err != nil {
		return err
	}
	if !c.NoWorkers {
		m.events.setup.add("consumer "+cfg.Consumer, p.worker.Ensure, p.worker.Start)
	}
	m.slowMetrics.MustRegister(holdfasthttp.NewCachedCollector(receipts.Collector(m.NATS.JS, cfg, p.db), 0)) // asks JetStream
	m.HTTP.ReceiptService = p.service
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

// openBlobs opens the store of receipt images: the data directory's
// blobs/, or the bucket of --blob-url, whose claims go through db. That is
// the intake's pool, which waits for a connection rather than failing fast:
// a committer claims its batch's keys and then records the batch, one after
// the other, and a worker's claim holds a connection for one statement.
func (m *Main) openBlobs(ctx context.Context, db *postgres.DB) (receipts.BlobStore, error) {
	c := m.Config.Receipts
	if c.BlobURL == "" {
		return blob.New(filepath.Join(m.Config.DataDir, "blobs"))
	}
	cfg, err := s3.ParseURL(c.BlobURL)
	if err != nil {
		return nil, err
	}
	cfg.AccessKey, cfg.SecretKey, cfg.Ledger = c.BlobAccessKey, c.BlobSecretKey, postgres.NewBlobLedger(db)
	st, err := s3.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("--blob-url: %w", err)
	}
	return st, nil
}

// closeReceipts finishes the uploads in hand, stops the workers after the
// jobs in hand, then their pool.
func (m *Main) closeReceipts() {
	if m.receipts == nil {
		return
	}
	if m.receipts.gc != nil {
		m.receipts.gc.Stop()
	}
	if m.receipts.service != nil {
		m.receipts.service.Stop()
	}
	if m.receipts.intake != nil {
		m.receipts.intake.Close()
	}
	if m.receipts.worker != nil {
		m.receipts.worker.Stop()
	}
	if m.receipts.db != nil {
		m.receipts.db.Close()
	}
}

// intakeStore reads on the request pool and records batches on the
// intake's own.
type intakeStore struct {
	*postgres.ReceiptStore
	batches *postgres.ReceiptStore
}

func (s intakeStore) QueueReceipts(ctx context.Context, rs []*holdfast.Receipt, quota int64) ([]*holdfast.Receipt, []error, error) {
	return s.batches.QueueReceipts(ctx, rs, quota)
}
