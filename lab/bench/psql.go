package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/postgres"
)

// Psql returns the path of the psql client: beside the PostgreSQL server
// binaries pglocal uses, else on PATH.
func Psql() (string, error) {
	if dir, err := pglocal.FindBinDir(); err == nil {
		if p := filepath.Join(dir, "psql"); exec.Command(p, "--version").Run() == nil {
			return p, nil
		}
	}
	return exec.LookPath("psql")
}

// psqlCopy is the psql meta-command that writes the same rows as an export
// of the tenant's account (postgres.ExportQuery), as CSV to stdout.
func psqlCopy(tenant, account string) string {
	q := strings.NewReplacer("$1", "'"+tenant+"'::uuid", "$2", "'"+account+"'::uuid", "$3", "0",
		"$4", "NULL", "$5", "NULL").Replace(postgres.ExportQuery)
	return `\copy (` + strings.Join(strings.Fields(q), " ") + `) to stdout with (format csv)`
}

// runPsql runs psql's \copy of the same query with its output discarded
// (counted).
func runPsql(ctx context.Context, cfg ExportConfig) (ExportRun, error) {
	run := ExportRun{Name: `psql \copy csv`}
	lc := &lineCounter{}
	cmd := exec.CommandContext(ctx, cfg.Psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cfg.DatabaseURL, "-c", psqlCopy(cfg.Tenant, cfg.Account))
	cmd.Stdout = lc
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return run, fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	run.Elapsed = time.Since(start)
	run.Bytes, run.Rows = lc.bytes, lc.lines
	return run, nil
}
