package apitest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/holdfast/holdfast/blob"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/receipts"
)

// Receipts is a running receipt pipeline for tests.
type Receipts struct {
	Service     *receipts.Service
	DeadLetters *receipts.DeadLetters
	Worker      *receipts.Worker
	Config      receipts.Config
}

// MustReceipts starts the receipt pipeline on db and the event log l (whose
// relay carries the jobs), with one worker replica; stopped when tb ends.
// configure, if given, adjusts the intake's configuration.
func MustReceipts(tb testing.TB, db *postgres.DB, l *EventLog, cfg receipts.Config, configure ...func(*receipts.ServiceConfig)) *Receipts {
	tb.Helper()
	ctx := context.Background()
	if _, err := receipts.EnsureStreams(ctx, l.NATS.JS, cfg); err != nil {
		tb.Fatal(err)
	}
	blobs, err := blob.New(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	lane, err := overload.NewLane(overload.LaneConfig{Name: "test", Size: 1, Queue: 100})
	if err != nil {
		tb.Fatal(err)
	}
	store := postgres.NewReceiptStore(db)
	w, err := receipts.NewWorker(l.NATS.JS, store, blobs, receipts.WorkerConfig{Config: cfg, Lane: lane,
		Logger: slog.New(slog.DiscardHandler), Tenants: store.TenantName})
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Stop)
	var intake receipts.ServiceConfig
	for _, f := range configure {
		f(&intake)
	}
	svc, err := receipts.NewService(store, blobs, intake)
	if err != nil {
		tb.Fatal(err)
	}
	svc.Start(ctx)
	tb.Cleanup(svc.Stop)
	return &Receipts{Service: svc, DeadLetters: receipts.NewDeadLetters(store, l.NATS.JS, cfg),
		Worker: w, Config: cfg.WithDefaults()}
}

// Services sets the pipeline's services on an HTTP server.
func (r *Receipts) Services(s *holdfasthttp.Server) {
	s.ReceiptService = r.Service
	s.DeadLetterService = r.DeadLetters
}
