package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/lifecycle"
	"github.com/holdfast/holdfast/internal/pglocal"
	"github.com/holdfast/holdfast/lab/load"
)

// ReplicaOptions are the settings of `holdfast-lab bench replica`; its
// flags give their defaults.
type ReplicaOptions struct {
	Entries  int           // entries of the exported account
	Exports  int           // exports running at once, each reading as fast as it can
	Rate     float64       // transfers per second, open loop
	Duration time.Duration // each run's measured span
	Warmup   time.Duration // each run's warm-up at the rate, not measured
}

// ReplicaRun is one run of the replica benchmark: the transfers' open loop
// and what the exports beside it read.
type ReplicaRun struct {
	Name        string
	Transfers   load.Result
	Exports     int64 // exports read to their end
	ExportBytes int64
}

// Replica runs the read-replica benchmark in a private primary cluster
// with a streaming replica (pglocal.StartReplica): transfers in an open
// loop at o.Rate while o.Exports exports of one long account run
// back to back, once with Holdfast exporting from the primary and once
// from the replica (--database-read-url), then prints the transfers' p99
// side by side. Progress goes to stderr. It ends by checking the ledger's
// invariants.
func Replica(ctx context.Context, o ReplicaOptions, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "holdfast-bench-replica-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	primary, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(dir, "primary")})
	if err != nil {
		return fmt.Errorf("start private PostgreSQL: %w", err)
	}
	defer primary.Stop()
	var b [6]byte
	rand.Read(b[:])
	name := "holdfast_bench_" + hex.EncodeToString(b[:])
	if err := primary.CreateDatabase(ctx, name); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "starting a streaming replica (pg_basebackup)")
	replica, err := pglocal.StartReplica(ctx, primary, pglocal.Config{Dir: filepath.Join(dir, "replica")})
	if err != nil {
		return err
	}
	defer replica.Stop()

	var runs []ReplicaRun
	var seed *replicaSeed
	for _, readURL := range []string{"", replica.URL(name)} {
		m, err := startReplicaMain(ctx, filepath.Join(dir, "data"), primary.URL(name), readURL, o, stderr)
		if err != nil {
			return err
		}
		if seed == nil {
			fmt.Fprintf(stdout, "holdfast-lab bench replica: %s\n", machine(ctx, m.DB.Pool))
			seed, err = seedReplica(ctx, m, o.Entries, stderr)
		}
		var run ReplicaRun
		if err == nil {
			err = waitReplayed(ctx, primary.URL(name), replica.URL(name))
		}
		if err == nil {
			run, err = replicaRun(ctx, m, seed, o, stderr)
		}
		if err == nil && readURL != "" {
			err = verifyAfterBench(ctx, m, seed.tenant, io.Discard)
		}
		m.Stop()
		if err != nil {
			return err
		}
		runs = append(runs, run)
	}
	printReplica(stdout, o, runs)
	fmt.Fprintln(stdout, "ledger invariants hold: money conserved, no negative balance, balances = entries, each running balance in order")
	return nil
}

// startReplicaMain starts Holdfast on the primary, reading exports and
// lists from readURL if it is not empty.
func startReplicaMain(ctx context.Context, dataDir, dbURL, readURL string, o ReplicaOptions, stderr io.Writer) (*app.Main, error) {
	m := app.NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DatabaseURL, m.Config.DatabaseReadURL = dbURL, readURL
	m.Config.DataDir = dataDir
	m.Config.DBMaxConns = 16
	m.Config.ExportSlots, m.Config.ExportSlotsPerTenant = o.Exports+2, o.Exports+2
	m.Config.RateLimit = 0
	m.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m.Stdout = io.Discard
	if err := m.Start(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// replicaSeed is the data both runs share: a tenant and its key, the
// exported account, and the accounts transfers move money between.
type replicaSeed struct {
	tenant, key, account string
	transfers            []string
}

// seedReplica seeds the data of both runs through m's database.
func seedReplica(ctx context.Context, m *app.Main, entries int, stderr io.Writer) (*replicaSeed, error) {
	t, key, err := (&benchEnv{main: m}).tenant(ctx)
	if err != nil {
		return nil, err
	}
	account, transfers, err := seedExport(ctx, m.DB, t.ID, entries, stderr)
	if err != nil {
		return nil, err
	}
	return &replicaSeed{tenant: t.ID, key: key.Secret, account: account, transfers: transfers}, nil
}

// replicaRun measures one run: transfers in an open loop beside exports
// run back to back.
func replicaRun(ctx context.Context, m *app.Main, seed *replicaSeed, o ReplicaOptions, stderr io.Writer) (ReplicaRun, error) {
	run := ReplicaRun{Name: "exports on the primary"}
	if m.Config.DatabaseReadURL != "" {
		run.Name = "exports on the replica"
	}
	fmt.Fprintf(stderr, "%s: %d exports, transfers at %.0f/s for %v after %v\n", run.Name, o.Exports, o.Rate, o.Duration, o.Warmup)
	poster, err := load.NewPoster(m.HTTP.URL(), 256, 30*time.Second)
	if err != nil {
		return run, err
	}
	defer poster.Close()
	transfers := seed.transfers
	pick := func(rng *mrand.Rand) (string, string) {
		i := rng.IntN(len(transfers))
		return transfers[i], transfers[(i+1+rng.IntN(len(transfers)-1))%len(transfers)]
	}
	url := m.HTTP.URL() + "/v1/accounts/" + seed.account + "/transactions.csv"
	stop := exportLoops(ctx, url, seed.key, o.Exports, &run)
	_, run.Transfers = load.OpenLoopAfter(ctx, run.Name, o.Rate, o.Warmup, o.Duration, 256,
		load.TransferCall(poster, seed.key, time.Now().UnixNano(), pick))
	return run, stop()
}

// exportLoops starts n goroutines that export url again and again, reading
// each export to its end, and returns the function that stops them and
// reports the first failure.
func exportLoops(ctx context.Context, url, key string, n int, run *ReplicaRun) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	var exports, bytes atomic.Int64
	var firstErr atomic.Pointer[error]
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := get(ctx, client, url, key)
				if err == nil {
					var k int64
					k, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					bytes.Add(k)
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("export: status %d", resp.StatusCode)
					}
				}
				if err == nil {
					exports.Add(1)
				} else if ctx.Err() == nil {
					firstErr.CompareAndSwap(nil, &err)
					lifecycle.Sleep(ctx, 100*time.Millisecond)
				}
			}
		})
	}
	return func() error {
		cancel()
		wg.Wait()
		run.Exports, run.ExportBytes = exports.Load(), bytes.Load()
		if p := firstErr.Load(); p != nil {
			return *p
		}
		return nil
	}
}

// waitReplayed waits until the replica has replayed all the primary had
// written, so that each run starts from the same data on both.
func waitReplayed(ctx context.Context, dbURL, replicaURL string) error {
	var target string
	if err := queryOne(ctx, dbURL, "SELECT pg_current_wal_lsn()::text", &target); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		var done bool
		if err := queryOne(ctx, replicaURL, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", &done, target); err != nil {
			return err
		}
		if done {
			return nil
		}
		if !lifecycle.Sleep(ctx, 100*time.Millisecond) {
			return errors.New("the replica did not catch up with the primary within 5 minutes")
		}
	}
}

// queryOne scans the one row of sql on the database at url into dest.
func queryOne(ctx context.Context, url, sql string, dest any, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest)
}
