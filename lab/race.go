package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

func init() {
	Register(Scenario{
		Name: "race", Section: "Part 2",
		Description: "concurrent transfers: read-modify-write, global mutex, FOR UPDATE, atomic UPDATE, optimistic retry, group commit",
		Run:         runRace,
	})
}

// Wallets is a table of balances with no constraint at all, on which the
// textbook ways of moving money are measured: race_wallets(id, balance,
// version). Holdfast's own tables refuse a negative balance whatever the
// code does; these do not, so that each way's own correctness shows.
type Wallets struct {
	Pool *pgxpool.Pool
	mu   sync.Mutex // the global lock of GlobalMutexTransfer
}

// CreateWallets creates (or resets) n wallets numbered 1..n holding
// balance each.
func CreateWallets(ctx context.Context, pool *pgxpool.Pool, n int, balance int64) (*Wallets, error) {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS race_wallets (id int PRIMARY KEY, balance bigint NOT NULL, version bigint NOT NULL DEFAULT 0);
		TRUNCATE race_wallets`); err != nil {
		return nil, fmt.Errorf("create wallets: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO race_wallets (id, balance) SELECT g, $2 FROM generate_series(1, $1) g`, n, balance); err != nil {
		return nil, fmt.Errorf("create wallets: %w", err)
	}
	return &Wallets{Pool: pool}, nil
}

// Totals returns the sum of the balances and how many are negative.
func (w *Wallets) Totals(ctx context.Context) (total int64, negative int, err error) {
	err = w.Pool.QueryRow(ctx, "SELECT coalesce(sum(balance), 0), count(*) FILTER (WHERE balance < 0) FROM race_wallets").Scan(&total, &negative)
	return total, negative, err
}

// A TransferFunc moves amount from wallet from to wallet to, unless from
// holds less. It reports whether it moved the money, and how many times it
// had to start again.
type TransferFunc func(ctx context.Context, from, to int, amount int64) (moved bool, retries int, err error)

// ReadModifyWrite is the naive transfer: read both balances, check, write
// both new balances, each statement on its own. Two concurrent transfers
// on one wallet both read the same balance and the second write erases the
// first: a lost update, money created or destroyed.
func (w *Wallets) ReadModifyWrite(ctx context.Context, from, to int, amount int64) (bool, int, error) {
	var fromBal, toBal int64
	if err := w.Pool.QueryRow(ctx, "SELECT balance FROM race_wallets WHERE id = $1", from).Scan(&fromBal); err != nil {
		return false, 0, err
	}
	if fromBal < amount {
		return false, 0, nil
	}
	if err := w.Pool.QueryRow(ctx, "SELECT balance FROM race_wallets WHERE id = $1", to).Scan(&toBal); err != nil {
		return false, 0, err
	}
	if _, err := w.Pool.Exec(ctx, "UPDATE race_wallets SET balance = $2 WHERE id = $1", from, fromBal-amount); err != nil {
		return false, 0, err
	}
	if _, err := w.Pool.Exec(ctx, "UPDATE race_wallets SET balance = $2 WHERE id = $1", to, toBal+amount); err != nil {
		return false, 0, err
	}
	return true, 0, nil
}

// GlobalMutex is ReadModifyWrite under one process-wide lock: correct in
// one process, and every transfer waits for every other.
func (w *Wallets) GlobalMutex(ctx context.Context, from, to int, amount int64) (bool, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ReadModifyWrite(ctx, from, to, amount)
}

// ForUpdate locks both rows (in id order, so two transfers cannot
// deadlock) in a transaction, checks and writes.
func (w *Wallets) ForUpdate(ctx context.Context, from, to int, amount int64) (bool, int, error) {
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return false, 0, err
	}
	defer tx.Rollback(ctx)
	var fromBal int64
	rows, _ := tx.Query(ctx, "SELECT id, balance FROM race_wallets WHERE id = ANY($1) ORDER BY id FOR UPDATE", []int{from, to})
	var id int
	var bal int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &bal}, func() error {
		if id == from {
			fromBal = bal
		}
		return nil
	}); err != nil {
		return false, 0, err
	}
	if fromBal < amount {
		return false, 0, nil
	}
	if _, err := tx.Exec(ctx, "UPDATE race_wallets SET balance = balance + CASE WHEN id = $1 THEN -$3::bigint ELSE $3::bigint END WHERE id IN ($1, $2)", from, to, amount); err != nil {
		return false, 0, err
	}
	return true, 0, tx.Commit(ctx)
}

// AtomicUpdate lets the database check and write in one statement per
// row: UPDATE … SET balance = balance - $amount WHERE balance >= $amount,
// both rows in one transaction, in id order.
func (w *Wallets) AtomicUpdate(ctx context.Context, from, to int, amount int64) (bool, int, error) {
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return false, 0, err
	}
	defer tx.Rollback(ctx)
	debit := func() (bool, error) {
		tag, err := tx.Exec(ctx, "UPDATE race_wallets SET balance = balance - $2 WHERE id = $1 AND balance >= $2", from, amount)
		return tag.RowsAffected() == 1, err
	}
	credit := func() error {
		_, err := tx.Exec(ctx, "UPDATE race_wallets SET balance = balance + $2 WHERE id = $1", to, amount)
		return err
	}
	if to < from {
		if err := credit(); err != nil {
			return false, 0, err
		}
	}
	if ok, err := debit(); err != nil || !ok {
		return false, 0, err
	}
	if to > from {
		if err := credit(); err != nil {
			return false, 0, err
		}
	}
	return true, 0, tx.Commit(ctx)
}

// errRetries ends an optimistic transfer that kept losing.
var errRetries = errors.New("optimistic transfer: too many retries")

// Optimistic reads both rows with their version without locking, checks,
// and writes each only if its version is still the one read (compare and
// swap); if either changed, it rolls back and starts again.
func (w *Wallets) Optimistic(ctx context.Context, from, to int, amount int64) (bool, int, error) {
	for retries := 0; retries < 1000; retries++ {
		var fromBal, fromVer, toBal, toVer int64
		if err := w.Pool.QueryRow(ctx, `SELECT f.balance, f.version, t.balance, t.version FROM race_wallets f, race_wallets t
			WHERE f.id = $1 AND t.id = $2`, from, to).Scan(&fromBal, &fromVer, &toBal, &toVer); err != nil {
			return false, retries, err
		}
		if fromBal < amount {
			return false, retries, nil
		}
		ok, err := w.swap(ctx, [2]int{from, to}, [2]int64{fromBal - amount, toBal + amount}, [2]int64{fromVer, toVer})
		if err != nil || ok {
			return ok, retries, err
		}
	}
	return false, 1000, errRetries
}

// swap writes both new balances if both versions are unchanged.
func (w *Wallets) swap(ctx context.Context, ids [2]int, bals, vers [2]int64) (bool, error) {
	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	order := []int{0, 1}
	if ids[1] < ids[0] {
		order = []int{1, 0}
	}
	for _, i := range order {
		tag, err := tx.Exec(ctx, "UPDATE race_wallets SET balance = $2, version = version + 1 WHERE id = $1 AND version = $3", ids[i], bals[i], vers[i])
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() == 0 {
			return false, nil
		}
	}
	return true, tx.Commit(ctx)
}

// RaceRun is one way's outcome.
type RaceRun struct {
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
func (r RaceRun) Correct() bool { return r.MoneyDelta == 0 && r.Negative == 0 && r.Errors == 0 }

// RaceConfig sizes the race.
type RaceConfig struct {
	Wallets   int   // few, so transfers collide
	Balance   int64 // each wallet's at the start
	Workers   int
	Transfers int // per worker
}

// raceLoad runs cfg.Workers goroutines each making cfg.Transfers random
// transfers of 1..100 with transfer, and counts.
func raceLoad(ctx context.Context, name string, cfg RaceConfig, transfer func(ctx context.Context, from, to int, amount int64) (bool, int, error)) RaceRun {
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
	r := RaceRun{Name: name, Attempted: int64(cfg.Workers * cfg.Transfers), Moved: moved.Load(), Refused: refused.Load(),
		Errors: errs.Load(), Retries: retries.Load(), Elapsed: time.Since(start)}
	r.Throughput = float64(r.Moved) / r.Elapsed.Seconds()
	return r
}

// Race runs every way of the race scenario on the database at url (which
// it migrates for Holdfast's part) and returns their outcomes, the naive
// read-modify-write first, Holdfast's group commit last.
func Race(ctx context.Context, url string, cfg RaceConfig, progress func(string, ...any)) ([]RaceRun, string, error) {
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

	var runs []RaceRun
	for _, v := range []struct {
		name string
		f    func(*Wallets) TransferFunc
	}{
		{"naive read-modify-write", func(w *Wallets) TransferFunc { return w.ReadModifyWrite }},
		{"global mutex", func(w *Wallets) TransferFunc { return w.GlobalMutex }},
		{"SELECT … FOR UPDATE", func(w *Wallets) TransferFunc { return w.ForUpdate }},
		{"atomic conditional UPDATE", func(w *Wallets) TransferFunc { return w.AtomicUpdate }},
		{"optimistic version check", func(w *Wallets) TransferFunc { return w.Optimistic }},
	} {
		w, err := CreateWallets(ctx, db.Pool, cfg.Wallets, cfg.Balance)
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

// raceHoldfast runs the same load through Holdfast's TransferService with
// group commit (in process, no HTTP, like the other ways), then
// audits the ledger.
func raceHoldfast(ctx context.Context, db *postgres.DB, cfg RaceConfig) (RaceRun, error) {
	tenant, _, err := postgres.NewTenantService(db).CreateTenant(ctx, holdfast.TenantCreate{Name: "lab race"}, nil)
	if err != nil {
		return RaceRun{}, err
	}
	ids, err := SeedAccounts(ctx, db.Pool, tenant.ID, "USD", cfg.Wallets, cfg.Balance, false)
	if err != nil {
		return RaceRun{}, err
	}
	svc, err := postgres.NewTransferServiceWith(db, postgres.TransferConfig{GroupCommit: true})
	if err != nil {
		return RaceRun{}, err
	}
	if err := svc.Start(ctx); err != nil {
		return RaceRun{}, err
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

func runRace(ctx context.Context, env *Env) (*Report, error) {
	cfg := RaceConfig{
		Wallets: pick(env.Scale, 4, 8, 8), Balance: 1_000,
		Workers:   pick(env.Scale, 8, 32, 64),
		Transfers: pick(env.Scale, 50, 60, 500),
	}
	url, err := env.NewDatabase(ctx)
	if err != nil {
		return nil, err
	}
	runs, version, err := Race(ctx, url, cfg, env.progressf)
	if err != nil {
		return nil, err
	}
	r := &Report{
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
		Chart:      &Chart{Title: "Concurrent transfers: throughput (label: money created or destroyed)", YLabel: "transfers per second"},
	}
	for _, run := range runs {
		r.Rows = append(r.Rows, []string{run.Name, fmt.Sprint(run.Moved), fmt.Sprint(run.Refused), fmt.Sprint(run.Errors),
			fmt.Sprint(run.Retries), fmt.Sprintf("%.0f", run.Throughput), fmt.Sprintf("%+d", run.MoneyDelta), fmt.Sprint(run.Negative), yesNo(run.Correct())})
		group, note := "correct", fmt.Sprintf("%.0f/s", run.Throughput)
		if !run.Correct() {
			group, note = "wrong", fmt.Sprintf("%.0f/s, money %+d", run.Throughput, run.MoneyDelta)
		}
		r.Chart.Bars = append(r.Chart.Bars, Bar{Label: run.Name, Value: run.Throughput, Group: group, Note: note})
	}
	naive, mutex, hf := runs[0], runs[1], runs[len(runs)-1]
	r.Findings = []string{
		fmt.Sprintf("naive read-modify-write: money %+d after %d acknowledged transfers (lost updates); Holdfast: %+d, ledger audited",
			naive.MoneyDelta, naive.Moved, hf.MoneyDelta),
		fmt.Sprintf("global mutex: correct in one process at %.0f/s; Holdfast's group commit %.1f× that", mutex.Throughput, ratio(hf.Throughput, mutex.Throughput)),
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
