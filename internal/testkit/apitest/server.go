package apitest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

// MustServe starts the HTTP API on a free loopback port over the real
// PostgreSQL services of db, with group commit on and an export pool sized
// by ExportSlots (the server's ExportService is a *postgres.ExportService),
// and stops it when tb
// ends. configure may adjust the server's configuration (the default has
// no admin token, logs nothing and checks API keys on every request).
func MustServe(tb testing.TB, db *postgres.DB, configure ...func(*holdfasthttp.Config)) *holdfasthttp.Server {
	tb.Helper()
	return MustServeWith(tb, db, nil, configure...)
}

// MustServeWith is MustServe with more services: services, when not nil,
// sets them on the server before it opens (see MustEventLog).
func MustServeWith(tb testing.TB, db *postgres.DB, services func(*holdfasthttp.Server), configure ...func(*holdfasthttp.Config)) *holdfasthttp.Server {
	tb.Helper()
	c := holdfasthttp.Config{Addr: "127.0.0.1:0", AuthCacheTTL: -1, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range configure {
		f(&c)
	}
	s, err := holdfasthttp.NewServer(c)
	if err != nil {
		tb.Fatal(err)
	}
	transfers, err := postgres.NewTransferServiceWith(db, postgres.TransferConfig{GroupCommit: true})
	if err != nil {
		tb.Fatal(err)
	}
	if err := transfers.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	s.TenantService = postgres.NewTenantService(db)
	s.AccountService = postgres.NewAccountService(db)
	s.BalanceService = postgres.NewBalanceService(db)
	s.TransferService = transfers
	s.IdempotencyService = postgres.NewIdempotencyService(db, 0)
	exports, err := postgres.NewExportService(db, postgres.ExportConfig{MaxConns: int32(c.ExportSlots)})
	if err != nil {
		transfers.Stop()
		tb.Fatal(err)
	}
	s.ExportService = exports
	s.Ready = db.Ping
	cipher, err := webhooks.NewCipher(make([]byte, webhooks.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	s.WebhookService = postgres.NewWebhookService(db, cipher)
	if services != nil {
		services(s)
	}
	if err := s.Open(); err != nil {
		exports.Close()
		transfers.Stop()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
		exports.Close()
		transfers.Stop()
	})
	return s
}
