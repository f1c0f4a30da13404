package postgres

import (
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// accountKey is an account id as a tenant's request names it.
type accountKey struct{ tenant, id string }

// accountArrays returns the tenants and ids of the accounts, pairwise.
func accountArrays(owned map[accountKey]struct{}) (tenants, ids UUIDArray) {
	tenants, ids = make(UUIDArray, 0, len(owned)), make(UUIDArray, 0, len(owned))
	for k := range owned {
		tenants, ids = append(tenants, k.tenant), append(ids, k.id)
	}
	return tenants, ids
}

// queueReadAccounts reads the accounts (tenants[i], ids[i]) into the
// returned map by id (filled when the batch runs), locking them in id order
// if lock. An id named by a tenant that does not own it reads nothing and
// locks nothing: the request naming it fails with ENOTFOUND.
func queueReadAccounts(b *pgx.Batch, tenants, ids UUIDArray, lock bool) map[string]*holdfast.AccountState {
	accounts := make(map[string]*holdfast.AccountState, len(ids))
	sql := readAccountsSQL
	if lock {
		sql = lockAccountsSQL
	}
	b.Queue(sql, tenants, ids).Query(func(rows pgx.Rows) error {
		var id string
		var a holdfast.AccountState
		_, err := pgx.ForEachRow(rows, []any{&id, &a.TenantID, &a.Currency, &a.AllowOverdraft, &a.Balance}, func() error {
			acct := a
			accounts[id] = &acct
			return nil
		})
		return err
	})
	return accounts
}

// lockAccountsSQL reads the accounts ($1[i], $2[i]) (tenant, id) and locks
// them in id order; readAccountsSQL only reads them. The tenant is part of
// the key, so a request naming another tenant's account id can neither lock
// nor read that row.
const (
	lockAccountsSQL = readAccountsSQL + ` ORDER BY a.id FOR UPDATE OF a`
	readAccountsSQL = `SELECT a.id, a.tenant_id, a.currency, a.allow_overdraft, a.balance FROM accounts a
	JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id) ON a.id = k.id AND a.tenant_id = k.tenant_id`
)

// queueExpect fails the transaction with a serialization failure unless
// every account has the balance and overdraft permission a pipelined batch
// applied against (ledger_expect, migration 0007).
func queueExpect(b *pgx.Batch, want map[string]holdfast.AccountState) *pgx.QueuedQuery {
	n := len(want)
	ids, balances, overdraft := make([]string, 0, n), make([]int64, 0, n), make([]bool, 0, n)
	for id, a := range want {
		ids, balances, overdraft = append(ids, id), append(balances, a.Balance), append(overdraft, a.AllowOverdraft)
	}
	return b.Queue(`SELECT ledger_expect(count(*) = $4) FROM accounts a
		JOIN unnest($1::uuid[], $2::bigint[], $3::bool[]) AS v(id, balance, overdraft)
			ON a.id = v.id AND a.balance = v.balance AND a.allow_overdraft = v.overdraft`, UUIDArray(ids), Int8Array(balances), BoolArray(overdraft), n)
}

// queueFindExisting reads the transfers that already have one of the given
// ids into the returned map (filled when the batch runs).
func queueFindExisting(b *pgx.Batch, tenants, ids []string) map[holdfast.TransferKey]*holdfast.Transfer {
	existing := make(map[holdfast.TransferKey]*holdfast.Transfer)
	if len(ids) == 0 {
		return existing
	}
	b.Queue("SELECT "+transferColumns+` FROM transfers t
		JOIN unnest($1::uuid[], $2::uuid[]) AS c(tenant_id, id) USING (tenant_id, id)`, UUIDArray(tenants), UUIDArray(ids)).Query(func(rows pgx.Rows) error {
		list, err := pgx.CollectRows(rows, scanTransfer)
		for _, t := range list {
			existing[holdfast.TransferKey{TenantID: t.TenantID, ID: t.ID}] = t
		}
		return err
	})
	return existing
}

// newTransferID returns the id of a transfer whose client gave none: a
// UUIDv7, so that ids sort by creation time.
func newTransferID() string { return uuid.Must(uuid.NewV7()).String() }

// queueInsertTransfers inserts the new transfers. A client-supplied id that
// a concurrent batch inserted first violates the primary key, which fails
// the batch; it then runs again and sees the transfer as existing.
func queueInsertTransfers(b *pgx.Batch, ts []*holdfast.Transfer) {
	if len(ts) == 0 {
		return
	}
	n := len(ts)
	tenant, id, debit, credit := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amount, currency, desc, at := make([]int64, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i, t := range ts {
		tenant[i], id[i], debit[i], credit[i] = t.TenantID, t.ID, t.DebitAccountID, t.CreditAccountID
		amount[i], currency[i], desc[i], at[i] = t.Amount, t.Currency, t.Description, t.CreatedAt
	}
	b.Queue(`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::timestamptz[])`,
		UUIDArray(tenant), UUIDArray(id), UUIDArray(debit), UUIDArray(credit), Int8Array(amount), TextArray(currency), TextArray(desc), TimestamptzArray(at))
}

func queueInsertEntries(b *pgx.Batch, es []holdfast.Entry) {
	if len(es) == 0 {
		return
	}
	n := len(es)
	acct, tr, amount, after, at := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i, e := range es {
		acct[i], tr[i], amount[i], after[i], at[i] = e.AccountID, e.TransferID, e.Amount, e.BalanceAfter, e.CreatedAt
	}
	b.Queue(`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::timestamptz[])`,
		UUIDArray(acct), UUIDArray(tr), Int8Array(amount), Int8Array(after), TimestamptzArray(at))
}

func queueUpdateBalances(b *pgx.Batch, accounts map[string]*holdfast.AccountState) {
	var ids []string
	var balances []int64
	for id, a := range accounts {
		if a.Changed {
			ids = append(ids, id)
			balances = append(balances, a.Balance)
		}
	}
	if len(ids) == 0 {
		return
	}
	b.Queue(updateBalancesSQL, UUIDArray(ids), Int8Array(balances))
}

// updateBalancesSQL sets the balance of each account $1[i] to $2[i].
const updateBalancesSQL = `UPDATE accounts a SET balance = v.balance
	FROM unnest($1::uuid[], $2::bigint[]) AS v(id, balance) WHERE a.id = v.id`
