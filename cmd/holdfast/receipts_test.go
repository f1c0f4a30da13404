package main_test

import (
	"io"
	"testing"

	main "github.com/holdfast/holdfast/cmd/holdfast"
)

func TestParseFlags_ReceiptQuota(t *testing.T) {
	t.Parallel()
	if q := main.NewMain().Config.Receipts.QuotaMiB; q != 10<<10 {
		t.Fatalf("default receipt quota %d MiB, want 10 GiB", q)
	}
	m := main.NewMain()
	if err := m.ParseFlags("serve", []string{"--database-url", "postgres://x", "--receipt-quota-mib", "512"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if q := m.Config.Receipts.QuotaMiB; q != 512 {
		t.Fatalf("--receipt-quota-mib 512 parsed as %d", q)
	}
}
