package naive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

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

// WalletServer is the service of the seed's mistake 2: POST
// /transfer?from=&to=&amount= moves money between race_wallets under the
// process's own mutex (Wallets.GlobalMutex), which is perfectly safe while
// there is one process. It answers 200 when it moved the money, 422 when
// the wallet holds too little.
type WalletServer struct{ Wallets *Wallets }

func (n *WalletServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := strconv.Atoi(q.Get("from"))
	to, err2 := strconv.Atoi(q.Get("to"))
	amount, err3 := strconv.ParseInt(q.Get("amount"), 10, 64)
	if r.Method != http.MethodPost || err1 != nil || err2 != nil || err3 != nil || amount <= 0 || from == to {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	moved, _, err := n.Wallets.GlobalMutex(r.Context(), from, to, amount)
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case !moved:
		http.Error(w, "insufficient funds", http.StatusUnprocessableEntity)
	}
}
