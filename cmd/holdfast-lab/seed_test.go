package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

func TestSeed(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := postgres.Migrate(ctx, db); err != nil { // as `holdfast migrate` does
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run([]string{"seed", "--database-url", url, "--entries", "3000"}, &stdout, &stderr); err != nil {
		t.Fatal(err, stderr.String())
	}
	m := regexp.MustCompile(`tenant:\s+(\S+)\nAPI key:\s+hf_\S+\naccount:\s+(\S+)\n[\s\S]*curl .*/v1/accounts/(\S+)/transactions.csv`).FindStringSubmatch(stdout.String())
	if m == nil || m[2] != m[3] {
		t.Fatalf("seed printed:\n%s", stdout.String())
	}
	if !bytes.Contains(stderr.Bytes(), []byte("100% 3000/3000")) {
		t.Errorf("no finished progress bar on stderr:\n%q", stderr.String())
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM entries WHERE account_id = $1", m[2]).Scan(&n); err != nil || n != 3000 {
		t.Fatalf("%d entries, %v; want 3000", n, err)
	}
	if err := postgres.VerifyLedger(ctx, db, m[1]); err != nil {
		t.Fatal(err)
	}
}
