package lab

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

// NaiveLedger is the textbook transfer endpoint that Holdfast's group commit
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
type NaiveLedger struct {
	Pool   *pgxpool.Pool
	Tenant string
	// Events writes each transfer's transfer.posted event in its
	// transaction, as an outbox row of one event, which Holdfast's relay
	// publishes and its consumer groups apply as they do Holdfast's own: the
	// rows a Holdfast transfer writes, one statement at a time.
	Events bool
}

type naiveTransfer struct {
	DebitAccountID  string `json:"debit_account_id"`
	CreditAccountID string `json:"credit_account_id"`
	Amount          int64  `json:"amount"`
	Currency        string `json:"currency"`
}

func (n *NaiveLedger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/transfers" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var in naiveTransfer
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

func (n *NaiveLedger) transfer(ctx context.Context, key string, body []byte, in naiveTransfer) (int, []byte, error) {
	tx, err := n.Pool.Begin(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback(ctx)
	if key != "" {
		fp := sha256.Sum256(body)
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, lock_token, locked_at, created_at)
			VALUES ($1, $2, $3, $4, now(), now()) ON CONFLICT DO NOTHING`, n.Tenant, key, fp[:], uuid.NewString())
		if err != nil {
			return 0, nil, err
		}
		if tag.RowsAffected() == 0 {
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
	}
	lo, hi := in.DebitAccountID, in.CreditAccountID
	if hi < lo {
		lo, hi = hi, lo
	}
	balances := map[string]int64{}
	overdraft := map[string]bool{}
	for _, id := range []string{lo, hi} {
		var b int64
		var od bool
		err := tx.QueryRow(ctx, "SELECT balance, allow_overdraft FROM accounts WHERE id = $1 AND tenant_id = $2 FOR UPDATE", id, n.Tenant).Scan(&b, &od)
		if errors.Is(err, pgx.ErrNoRows) {
			return http.StatusNotFound, []byte(`{"error":"account not found"}`), nil
		}
		if err != nil {
			return 0, nil, err
		}
		balances[id], overdraft[id] = b, od
	}
	if !overdraft[in.DebitAccountID] && balances[in.DebitAccountID] < in.Amount {
		return http.StatusUnprocessableEntity, []byte(`{"error":"insufficient funds"}`), nil
	}
	id, now := uuid.NewString(), time.Now().UTC()
	debitAfter, creditAfter := balances[in.DebitAccountID]-in.Amount, balances[in.CreditAccountID]+in.Amount
	if _, err := tx.Exec(ctx, `INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, '', $7)`, n.Tenant, id, in.DebitAccountID, in.CreditAccountID, in.Amount, in.Currency, now); err != nil {
		return 0, nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		VALUES ($1, $3, $4, $5, $7), ($2, $3, $6, $8, $7)`,
		in.DebitAccountID, in.CreditAccountID, id, -in.Amount, debitAfter, in.Amount, now, creditAfter); err != nil {
		return 0, nil, err
	}
	t := holdfast.Transfer{ID: id, DebitAccountID: in.DebitAccountID, CreditAccountID: in.CreditAccountID,
		Amount: in.Amount, Currency: in.Currency, CreatedAt: now}
	resp, err := json.Marshal(t)
	if err != nil {
		return 0, nil, err
	}
	if n.Events {
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (id, tenant_id, type, occurred_at, data) VALUES ($1, $2, $3, $4, $5)`,
			uuid.Must(uuid.NewV7()).String(), n.Tenant, holdfast.EventTransferPosted, now, resp); err != nil {
			return 0, nil, err
		}
	}
	for acct, bal := range map[string]int64{in.DebitAccountID: debitAfter, in.CreditAccountID: creditAfter} {
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = $2 WHERE id = $1", acct, bal); err != nil {
			return 0, nil, err
		}
	}
	if key != "" {
		outcome, err := holdfast.EncodeOutcome("", []holdfast.Transfer{t}, nil)
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
