package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/lab/bench"
	"github.com/holdfast/holdfast/lab/naive"
	"github.com/holdfast/holdfast/lab/report"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	register(Scenario{
		Name: "race", Section: "Part 2",
		Description: "concurrent transfers: read-modify-write, global mutex, FOR UPDATE, atomic UPDATE, optimistic retry, group commit",
		Run:         runRace,
	})
}

// raceRun is one way's outcome.
type raceRun struct {
	Name       string        `json:"name"`
	Attempted  int64         `json:"attempted"`
	Moved      int64         `json:"moved"`   // acknowledged transfers
	Refused    int64         `json:"refused"` // not enough money
	Errors     int64         `json:"errors"`
	Retries    int64         `json:"retries"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	Throughput float64       `json:"transfers_per_second"`
	// MoneyDelta is the final total minus the initial: money created (> 0)
	// or destroyed (< 0) by lost updates. Zero if correct.
	MoneyDelta int64 `json:"money_delta"`
	Negative   int   `json:"negative_balances"`
}

// Correct reports whether the run conserved money and overdrew nobody.
func (r raceRun) Correct() bool { return r.MoneyDelta == 0 && r.Negative == 0 && r.Errors == 0 }

// raceConfig sizes the race.
type raceConfig struct {
	Wallets   int   // few, so transfers collide
	Balance   int64 // each wallet's at the start
	Workers   int
	Transfers int // per worker
}

// raceLoad runs cfg.Workers goroutines each making cfg.Transfers random
// transfers of 1..100 with transfer, and counts.
func raceLoad(ctx context.Context, name string, cfg raceConfig, transfer func(ctx context.Context, from, to int, amount int64) (bool, int, error)) raceRun {
	var moved, refused, errs, retries atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.Workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range cfg.Transfers {
				from := 1 + rng.IntN(cfg.Wallets)
				to := 1 + (from+rng.IntN(cfg.Wallets-1))%cfg.Wallets
				ok, n, err := transfer(ctx, from, to, int64(1+rng.IntN(100)))
				retries.Add(int64(n))
				switch {
				case err != nil:
					errs.Add(1)
				case ok:
					moved.Add(1)
				default:
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r := raceRun{Name: name, Attempted: int64(cfg.Workers * cfg.Transfers), Moved: moved.Load(), Refused: refused.Load(),
		Errors: errs.Load(), Retries: retries.Load(), Elapsed: time.Since(start)}
	r.Throughput = float64(r.Moved) / r.Elapsed.Seconds()
	return r
}

// race runs every way of the race scenario on the database at url (which
// it migrates for Holdfast's part) and returns their outcomes, the naive
// read-modify-write first, Holdfast's group commit last.
func race(ctx context.Context, url string, cfg raceConfig, progress func(string, ...any)) ([]raceRun, string, error) {
	db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 16, AcquireTimeout: harnessAcquire})
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	if err := postgres.Migrate(ctx, db); err != nil {
		return nil, "", err
	}
	version := serverVersion(ctx, db.Pool)
	initial := int64(cfg.Wallets) * cfg.Balance

	var runs []raceRun
	for _, v := range []struct {
		name string
		f    func(*naive.Wallets) naive.TransferFunc
	}{
		{"naive read-modify-write", func(w *naive.Wallets) naive.TransferFunc { return w.ReadModifyWrite }},
		{"global mutex", func(w *naive.Wallets) naive.TransferFunc { return w.GlobalMutex }},
		{"SELECT … FOR UPDATE", func(w *naive.Wallets) naive.TransferFunc { return w.ForUpdate }},
		{"atomic conditional UPDATE", func(w *naive.Wallets) naive.TransferFunc { return w.AtomicUpdate }},
		{"optimistic version check", func(w *naive.Wallets) naive.TransferFunc { return w.Optimistic }},
	} {
		w, err := naive.CreateWallets(ctx, db.Pool, cfg.Wallets, cfg.Balance)
		if err != nil {
			return nil, version, err
		}
		progress("race: %s, %d workers × %d transfers among %d wallets", v.name, cfg.Workers, cfg.Transfers, cfg.Wallets)
		run := raceLoad(ctx, v.name, cfg, v.f(w))
		total, negative, err := w.Totals(ctx)
		if err != nil {
			return nil, version, err
		}
		run.MoneyDelta, run.Negative = total-initial, negative
		runs = append(runs, run)
	}

	progress("race: Holdfast group commit, %d workers × %d transfers among %d accounts", cfg.Workers, cfg.Transfers, cfg.Wallets)
	run, err := raceHoldfast(ctx, db, cfg)
	if err != nil {
		return nil, version, err
	}
	return append(runs, run), version, nil
}

// raceHoldfast runs the same load through Holdfast's TransferService and
// group commit (in process, no HTTP, like the other ways), then
// audits the ledger.
func raceHoldfast(ctx context.Context, db *postgres.DB, cfg raceConfig) (raceRun, error) {
	tenant, _, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab race"}, nil)
	if err != nil {
		return raceRun{}, err
	}
	ids, err := bench.SeedAccounts(ctx, db.Pool, tenant.ID, "USD", cfg.Wallets, cfg.Balance, false)
	if err != nil {
		return raceRun{}, err
	}
	svc, err := postgres.NewTransferServiceWith(db, postgres.TransferConfig{GroupCommit: true})
	if err != nil {
		return raceRun{}, err
	}
	if err := svc.Start(ctx); err != nil {
		return raceRun{}, err
	}
	defer svc.Stop()
	run := raceLoad(ctx, "Holdfast group commit", cfg, func(ctx context.Context, from, to int, amount int64) (bool, int, error) {
		_, _, err := svc.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: tenant.ID, Transfers: []holdfast.TransferCreate{{
			DebitAccountID: ids[from-1], CreditAccountID: ids[to-1], Amount: amount, Currency: "USD"}}})
		if holdfast.IsCode(err, holdfast.EINSUFFICIENT) {
			return false, 0, nil
		}
		return err == nil, 0, err
	})
	var total int64
	var negative int
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(sum(balance), 0), count(*) FILTER (WHERE balance < 0) FROM accounts WHERE id = ANY($1::uuid[])",
		postgres.UUIDArray(ids)).Scan(&total, &negative); err != nil {
		return run, err
	}
	run.MoneyDelta, run.Negative = total-int64(cfg.Wallets)*cfg.Balance, negative
	if err := postgres.VerifyLedger(ctx, db, tenant.ID); err != nil {
		return run, err
	}
	return run, nil
}

func runRace(ctx context.Context, env *Env) (*report.Report, error) {
	cfg := raceConfig{
		Wallets: pick(env.Scale, 4, 8, 8), Balance: 1_000,
		Workers:   pick(env.Scale, 8, 32, 64),
		Transfers: pick(env.Scale, 50, 60, 500),
	}
	url, err := env.NewDatabase(ctx)
	if err != nil {
		return nil, err
	}
	runs, version, err := race(ctx, url, cfg, env.progressf)
	if err != nil {
		return nil, err
	}
	r := &report.Report{
		Claim: `Two requests touch the same balance. A counter drifts. […] Atomic operation […] Optimistic concurrency —
[…] at write time check "is the data still what I saw?" If yes, commit. If no, retry. […]
Locks are a tax on concurrency. The bigger the lock, the higher the tax.`,
		Measured: fmt.Sprintf(`%d goroutines each make %d transfers of 1–100 between random wallets among %d (each starts
with %d; a transfer that would overdraw is refused), on a 16-connection pool, six ways. The first five run on
a bare table (id, balance, version) with no constraint, so each way's own correctness shows; Holdfast's runs the
same load through its TransferService with group commit, in process like the others (no HTTP), on its
own schema, and the ledger is audited after (postgres.VerifyLedger). Money delta = final total − initial total.`,
			cfg.Workers, cfg.Transfers, cfg.Wallets, cfg.Balance),
		Columns:    []string{"way", "moved", "refused", "errors", "retries", "transfers/s", "money delta", "negative balances", "correct"},
		Data:       map[string]any{"config": cfg, "runs": runs},
		PostgreSQL: version,
		Chart:      &report.Chart{Title: "Concurrent transfers: throughput (label: money created or destroyed)", YLabel: "transfers per second"},
	}
	for _, run := range runs {
		r.Rows = append(r.Rows, []string{run.Name, fmt.Sprint(run.Moved), fmt.Sprint(run.Refused), fmt.Sprint(run.Errors),
			fmt.Sprint(run.Retries), fmt.Sprintf("%.0f", run.Throughput), fmt.Sprintf("%+d", run.MoneyDelta), fmt.Sprint(run.Negative), yesNo(run.Correct())})
		group, note := "correct", fmt.Sprintf("%.0f/s", run.Throughput)
		if !run.Correct() {
			group, note = "wrong", fmt.Sprintf("%.0f/s, money %+d", run.Throughput, run.MoneyDelta)
		}
		r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: run.Name, Value: run.Throughput, Group: group, Note: note})
	}
	naive, mutex, hf := runs[0], runs[1], runs[len(runs)-1]
	r.Findings = []string{
		fmt.Sprintf("naive read-modify-write: money %+d after %d acknowledged transfers (lost updates); Holdfast: %+d, ledger audited",
			naive.MoneyDelta, naive.Moved, hf.MoneyDelta),
		fmt.Sprintf("global mutex: correct in one process at %.0f/s; Holdfast's group commit %.1f× that", mutex.Throughput, report.Ratio(hf.Throughput, mutex.Throughput)),
		fmt.Sprintf("optimistic version check: %d retries for %d transfers on %d hot wallets", runs[4].Retries, runs[4].Moved, cfg.Wallets),
	}
	return r, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
