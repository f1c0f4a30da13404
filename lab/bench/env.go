package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/postgres"
)

// benchEnv is a fresh database with Holdfast serving it.
type benchEnv struct {
	main    *app.Main
	cluster *pglocal.Cluster
	dir     string
	dbURL   string
}

// startBenchEnv creates a fresh database (on serverURL's server, or in a
// private cluster with durable settings when serverURL is empty) and runs
// Holdfast on it with a pool of poolSize, its configuration adjusted by
// configure. The caller closes it.
func startBenchEnv(ctx context.Context, serverURL string, poolSize int, stderr io.Writer, configure ...func(*app.Config)) (*benchEnv, error) {
	env := &benchEnv{}
	var err error
	env.dir, err = os.MkdirTemp("", "holdfast-bench-")
	if err != nil {
		return nil, err
	}
	if env.dbURL, env.cluster, err = createBenchDatabase(ctx, serverURL, env.dir); err != nil {
		env.close()
		return nil, err
	}
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL = env.dbURL
	m.Config.DataDir = env.dir + "/data"
	m.Config.DBMaxConns = poolSize
	m.Config.RateLimit = 0 // one API key drives every benchmark: measure the server, not its per-tenant quota
	m.Config.Events.Quota = 0
	m.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m.Stdout = io.Discard
	for _, f := range configure {
		f(&m.Config)
	}
	env.main = m
	if err := m.Start(ctx); err != nil {
		env.close()
		return nil, err
	}
	return env, nil
}

// createBenchDatabase creates a fresh database on serverURL's server, or
// in a private cluster with durable settings under dir when serverURL is
// empty (returned, for the caller to stop), and returns its URL.
func createBenchDatabase(ctx context.Context, serverURL, dir string) (string, *pglocal.Cluster, error) {
	var b [6]byte
	rand.Read(b[:])
	name := "holdfast_bench_" + hex.EncodeToString(b[:])
	if serverURL == "" {
		cluster, err := pglocal.Start(ctx, pglocal.Config{Dir: dir + "/postgres"})
		if err != nil {
			return "", nil, fmt.Errorf("start private PostgreSQL: %w", err)
		}
		if err := cluster.CreateDatabase(ctx, name); err != nil {
			cluster.Stop()
			return "", nil, err
		}
		return cluster.URL(name), cluster, nil
	}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", nil, err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	conn.Close(ctx)
	if err != nil {
		return "", nil, err
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), nil, nil
}

// tenant creates the tenant a benchmark runs as, with its API key.
func (e *benchEnv) tenant(ctx context.Context) (*holdfast.Tenant, *holdfast.APIKey, error) {
	return postgres.NewTenantService(e.main.DB).CreateTenant(ctx, holdfast.TenantCreate{Name: "bench"}, nil)
}

func (e *benchEnv) close() {
	if e.main != nil {
		e.main.Stop()
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
	os.RemoveAll(e.dir)
}

// machine describes where a benchmark ran.
func machine(ctx context.Context, pool *pgxpool.Pool) string {
	var pg string
	pool.QueryRow(ctx, "SHOW server_version").Scan(&pg)
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s/%s, %s (%s), PostgreSQL %s, load generator, server and database on the same machine",
		host, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), app.GCSettings(), pg)
}

// ServeLoopback serves h on a free loopback port and returns its URL and
// a function that stops it; an error if no port could be had.
func ServeLoopback(h http.Handler) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), srv.Close, nil
}

// verifyAfterBench checks the tenant's ledger once a benchmark is done and
// says so on stdout.
func verifyAfterBench(ctx context.Context, m *app.Main, tenant string, stdout io.Writer) error {
	if err := postgres.VerifyLedger(ctx, m.DB, tenant); err != nil {
		return fmt.Errorf("after the benchmark: %w", err)
	}
	fmt.Fprintln(stdout, "ledger invariants hold: money conserved, no negative balance, balances = entries, each running balance in order")
	return nil
}

// poolParam returns the query suffix that sets pgxpool's size on url.
func poolParam(u string, n int) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return sep + "pool_max_conns=" + strconv.Itoa(n)
}
