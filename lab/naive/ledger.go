package naive

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
)

// Ledger is the textbook transfer endpoint that Holdfast's group commit
// is measured against: one transaction per request that claims the
// Idempotency-Key, locks both accounts with SELECT … FOR UPDATE (in id
// order, so it is correct and deadlock-free, only slow), checks the funds,
// writes the transfer, its entries, with Events its transfer.posted event,
// and the key's outcome, and commits. Every request pays its own round
// trips, its own lock hold and its own WAL flush; on a hot account they form
// a convoy.
//
// It serves POST /v1/transfers for one tenant, on the same schema as
// Holdfast, and is never part of the service.
type Ledger struct {
	Pool   *pgxpool.Pool
	Tenant string
	// Events writes each transfer's transfer.posted event in its
	// transaction, as an outbox row of one event, which Holdfast's relay
	// publishes and its consumer groups apply as they do Holdfast's own: the
	// rows a Holdfast transfer writes, one statement at a time.
	Events bool
}

type transferRequest struct {
	DebitAccountID  string `json:"debit_account_id"`
	CreditAccountID string `json:"credit_account_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
}

func (n *Ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/transfers" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var in transferRequest
	if err != nil || json.Unmarshal(body, &in) != nil || in.Amount <= 0 || in.DebitAccountID == in.CreditAccountID {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	status, resp, err := n.transfer(r.Context(), r.Header.Get("Idempotency-Key"), body, in)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(resp)
}

// transfer runs one request's transaction; a status with a nil error is
// the answer, whether the transfer was made or refused.
func (n *Ledger) transfer(ctx context.Context, key string, body []byte, in transferRequest) (int, []byte, error) {
	tx, err := n.Pool.Begin(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback(ctx)
	if key != "" {
		if status, stored, err := n.claimKey(ctx, tx, key, body); err != nil || status != 0 {
			return status, stored, err
		}
	}
	balances, overdraft, err := n.lockAccounts(ctx, tx, in)
	if errors.Is(err, pgx.ErrNoRows) {
		return http.StatusNotFound, []byte(`{"error":"account not found"}`), nil
	}
	if err != nil {
		return 0, nil, err
	}
	if !overdraft[in.DebitAccountID] && balances[in.DebitAccountID] < in.Amount {
		return http.StatusUnprocessableEntity, []byte(`{"error":"insufficient funds"}`), nil
	}
	resp, err := n.post(ctx, tx, in, balances)
	if err != nil {
		return 0, nil, err
	}
	if key != "" {
		outcome, err := holdfast.EncodeOutcome("", []json.RawMessage{resp}, nil)
		if err != nil {
			return 0, nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE idempotency_keys SET outcome = $3, lock_token = NULL, locked_at = NULL
			WHERE tenant_id = $1 AND key = $2`, n.Tenant, key, outcome); err != nil {
			return 0, nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, resp, nil
}

// claimKey claims the Idempotency-Key for this request. A status of 0
// means the key was free and is now this request's; otherwise the answer
// is the stored response, or 409 while the first request is in flight.
func (n *Ledger) claimKey(ctx context.Context, tx pgx.Tx, key string, body []byte) (int, []byte, error) {
	fp := sha256.Sum256(body)
	tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, lock_token, locked_at, created_at)
		VALUES ($1, $2, $3, $4, now(), now()) ON CONFLICT DO NOTHING`, n.Tenant, key, fp[:], uuid.NewString())
	if err != nil || tag.RowsAffected() == 1 {
		return 0, nil, err
	}
	var stored []byte
	if err := tx.QueryRow(ctx, "SELECT outcome FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
		n.Tenant, key).Scan(&stored); err != nil {
		return 0, nil, err
	}
	if stored == nil {
		return http.StatusConflict, []byte(`{"error":"in progress"}`), nil
	}
	o, err := holdfast.DecodeOutcome(stored)
	if err != nil {
		return 0, nil, err
	}
	var ts []json.RawMessage // only successes are stored, each of one transfer
	if err := o.Decode(&ts); err != nil || len(ts) != 1 {
		return 0, nil, fmt.Errorf("stored outcome %s: %v", stored, err)
	}
	return http.StatusCreated, ts[0], nil
}

// lockAccounts locks both accounts with SELECT … FOR UPDATE, in id order,
// and returns their balances and whether each may go negative; an account
// the tenant does not have is pgx.ErrNoRows.
func (n *Ledger) lockAccounts(ctx context.Context, tx pgx.Tx, in transferRequest) (map[string]int64, map[string]bool, error) {
	lo, hi := in.DebitAccountID, in.CreditAccountID
	if hi < lo {
		lo, hi = hi, lo
	}
	balances := map[string]int64{}
	overdraft := map[string]bool{}
	for _, id := range []string{lo, hi} {
		var b int64
		var od bool
		if err := tx.QueryRow(ctx, "SELECT balance, allow_overdraft FROM accounts WHERE id = $1 AND tenant_id = $2 FOR UPDATE", id, n.Tenant).Scan(&b, &od); err != nil {
			return nil, nil, err
		}
		balances[id], overdraft[id] = b, od
	}
	return balances, overdraft, nil
}

// post writes the transfer, its entries, its event (with Events) and both
// new balances, and returns the transfer as the response's JSON.
func (n *Ledger) post(ctx context.Context, tx pgx.Tx, in transferRequest, balances map[string]int64) ([]byte, error) {
	id, now := uuid.NewString(), time.Now().UTC()
	debitAfter, creditAfter := balances[in.DebitAccountID]-in.Amount, balances[in.CreditAccountID]+in.Amount
	if _, err := tx.Exec(ctx, `INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, '', $7)`, n.Tenant, id, in.DebitAccountID, in.CreditAccountID, in.Amount, in.Currency, now); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		VALUES ($1, $3, $4, $5, $7), ($2, $3, $6, $8, $7)`,
		in.DebitAccountID, in.CreditAccountID, id, -in.Amount, debitAfter, in.Amount, now, creditAfter); err != nil {
		return nil, err
	}
	t := holdfast.Transfer{ID: id, DebitAccountID: in.DebitAccountID, CreditAccountID: in.CreditAccountID,
		Amount: in.Amount, Currency: in.Currency, CreatedAt: now}
	resp, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if n.Events {
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, tenant_id, type, occurred_at, data) VALUES ($1, $2, $3, $4, $5)`,
			uuid.Must(uuid.NewV7()).String(), n.Tenant, holdfast.EventTransferPosted, now, resp); err != nil {
			return nil, err
		}
	}
	for acct, bal := range map[string]int64{in.DebitAccountID: debitAfter, in.CreditAccountID: creditAfter} {
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = $2 WHERE id = $1", acct, bal); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
