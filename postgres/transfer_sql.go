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
		_, err := pgx.ForEachRow(rows, []any{&id, &a.TenantID, &a.Currency, &a.AllowOverdraft, &a.Balance,
			&a.PendingDebits, &a.PendingCredits, &a.OverdraftLimit, &a.MaxBalance}, func() error {
			acct := a
			accounts[id] = &acct
			a.MaxBalance = nil // the next row's scan must not write through this one's pointer
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
	readAccountsSQL = `SELECT a.id, a.tenant_id, a.currency, a.allow_overdraft, a.balance,
		a.pending_debits, a.pending_credits, a.overdraft_limit, a.max_balance FROM accounts a
	JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id) ON a.id = k.id AND a.tenant_id = k.tenant_id`
)

// queueExpect fails the transaction with a serialization failure unless
// every account has the balance, pending totals and overdraft permission a
// pipelined batch applied against (ledger_expect, migration 0007).
func queueExpect(b *pgx.Batch, want map[string]holdfast.AccountState) *pgx.QueuedQuery {
	n := len(want)
	ids, balances, overdraft := make([]string, 0, n), make([]int64, 0, n), make([]bool, 0, n)
	debits, credits := make([]int64, 0, n), make([]int64, 0, n)
	for id, a := range want {
		ids, balances, overdraft = append(ids, id), append(balances, a.Balance), append(overdraft, a.AllowOverdraft)
		debits, credits = append(debits, a.PendingDebits), append(credits, a.PendingCredits)
	}
	return b.Queue(`SELECT ledger_expect(count(*) = $6) FROM accounts a
		JOIN unnest($1::uuid[], $2::bigint[], $3::bool[], $4::bigint[], $5::bigint[]) AS v(id, balance, overdraft, debits, credits)
			ON a.id = v.id AND a.balance = v.balance AND a.allow_overdraft = v.overdraft
			AND a.pending_debits = v.debits AND a.pending_credits = v.credits`,
		UUIDArray(ids), Int8Array(balances), BoolArray(overdraft), Int8Array(debits), Int8Array(credits), n)
}

// queueFindExisting reads the transfers that already have one of the given
// ids into the returned map (filled when the batch runs).
func queueFindExisting(b *pgx.Batch, tenants, ids []string) map[holdfast.TransferKey]*holdfast.Transfer {
	existing := make(map[holdfast.TransferKey]*holdfast.Transfer)
	if len(ids) == 0 {
		return existing
	}
	b.Queue(findExistingSQL, UUIDArray(tenants), UUIDArray(ids)).Query(func(rows pgx.Rows) error {
		list, err := pgx.CollectRows(rows, scanTransfer)
		for _, t := range list {
			existing[holdfast.TransferKey{TenantID: t.TenantID, ID: t.ID}] = t
		}
		return err
	})
	return existing
}

// findExistingSQL reads the transfers ($1[i], $2[i]) that exist.
const findExistingSQL = "SELECT " + transferColumns + ` FROM transfers t
	JOIN unnest($1::uuid[], $2::uuid[]) AS c(tenant_id, id) USING (tenant_id, id)`

// newTransferID returns the id of a transfer whose client gave none: a
// UUIDv7, so that ids sort by creation time.
func newTransferID() string { return uuid.Must(uuid.NewV7()).String() }

// queueInsertTransfers inserts the new transfers. A client-supplied id that
// a concurrent batch inserted first violates the primary key, which fails
// the batch; it then runs again and sees the transfer as existing. So does
// a second resolution of one hold (transfers_resolves).
func queueInsertTransfers(b *pgx.Batch, ts []*holdfast.Transfer) {
	if len(ts) == 0 {
		return
	}
	n := len(ts)
	tenant, id, debit, credit := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amount, currency, desc, at := make([]int64, n), make([]string, n), make([]string, n), make([]time.Time, n)
	status, pending, pendingID, meta := make([]string, n), make([]bool, n), make([]string, n), make([]string, n)
	expires, hasExpiry := make([]time.Time, n), make([]bool, n)
	for i, t := range ts {
		tenant[i], id[i], debit[i], credit[i] = t.TenantID, t.ID, t.DebitAccountID, t.CreditAccountID
		amount[i], currency[i], desc[i], at[i] = t.Amount, t.Currency, t.Description, t.CreatedAt
		status[i], pending[i], pendingID[i], meta[i] = t.Status, t.Pending, t.PendingID, metadataText(t.Metadata)
		expires[i] = t.CreatedAt
		if t.ExpiresAt != nil {
			expires[i], hasExpiry[i] = *t.ExpiresAt, true
		}
	}
	// An empty pending_id is the nil UUID in a UUIDArray: NULLIF makes it NULL.
	b.Queue(`INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at,
			status, pending, pending_id, expires_at, metadata)
		SELECT t, i, d, c, a, cur, des, at, st, p, NULLIF(pid, '00000000-0000-0000-0000-000000000000'),
			CASE WHEN hx THEN x END, m::jsonb
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::timestamptz[],
			$9::text[], $10::bool[], $11::uuid[], $12::timestamptz[], $13::bool[], $14::text[])
			AS v(t, i, d, c, a, cur, des, at, st, p, pid, x, hx, m)`,
		UUIDArray(tenant), UUIDArray(id), UUIDArray(debit), UUIDArray(credit), Int8Array(amount), TextArray(currency), TextArray(desc), TimestamptzArray(at),
		TextArray(status), BoolArray(pending), UUIDArray(pendingID), TimestamptzArray(expires), BoolArray(hasExpiry), TextArray(meta))
}

// queueResolveHolds sets the status of the holds the batch resolved. Each
// must still be pending: a hold another replica's batch resolved in the
// meantime (possible only for a pipelined batch, which read it unlocked)
// fails the batch with a serialization failure, and it runs again locking
// first. transfers_resolves is the last line of defence behind it.
func queueResolveHolds(b *pgx.Batch, holds []*holdfast.Transfer) {
	if len(holds) == 0 {
		return
	}
	n := len(holds)
	tenant, id, status := make([]string, n), make([]string, n), make([]string, n)
	for i, h := range holds {
		tenant[i], id[i], status[i] = h.TenantID, h.ID, h.Status
	}
	b.Queue(resolveHoldsSQL, UUIDArray(tenant), UUIDArray(id), TextArray(status), n)
}

// resolveHoldsSQL sets the status of each hold ($1[i], $2[i]) to $3[i] if
// it is still pending, and fails with a serialization failure unless all
// $4 were.
//
// Each hold is sought by primary key: the status test is written so that
// it cannot match transfers_tenant_unposted. Holds are resolved soon after
// they are made, so the statistics show almost none pending, and the
// planner then chose that index, walking the tenant's whole 'pending' range
// for every hold, with an entry for every hold resolved since the last
// vacuum (TestResolveHolds_SeeksByPrimaryKeyWhenFewArePending).
const resolveHoldsSQL = `WITH u AS (UPDATE transfers t SET status = v.status
		FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS v(tenant_id, id, status)
		WHERE t.tenant_id = v.tenant_id AND t.id = v.id AND (t.status = 'pending') IS TRUE RETURNING 1)
	SELECT ledger_expect(count(*) = $4) FROM u`

func queueInsertEntries(b *pgx.Batch, es []holdfast.Entry) {
	if len(es) == 0 {
		return
	}
	n := len(es)
	acct, tr, amount, after, at := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	debits, credits := make([]int64, n), make([]int64, n)
	for i, e := range es {
		acct[i], tr[i], amount[i], after[i], at[i] = e.AccountID, e.TransferID, e.Amount, e.BalanceAfter, e.CreatedAt
		debits[i], credits[i] = e.PendingDebitsAfter, e.PendingCreditsAfter
	}
	b.Queue(`INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at, pending_debits_after, pending_credits_after)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::bigint[], $7::bigint[])`,
		UUIDArray(acct), UUIDArray(tr), Int8Array(amount), Int8Array(after), TimestamptzArray(at), Int8Array(debits), Int8Array(credits))
}

func queueUpdateBalances(b *pgx.Batch, accounts map[string]*holdfast.AccountState) {
	var ids []string
	var balances, debits, credits []int64
	for id, a := range accounts {
		if a.Changed {
			ids = append(ids, id)
			balances = append(balances, a.Balance)
			debits, credits = append(debits, a.PendingDebits), append(credits, a.PendingCredits)
		}
	}
	if len(ids) == 0 {
		return
	}
	b.Queue(updateBalancesSQL, UUIDArray(ids), Int8Array(balances), Int8Array(debits), Int8Array(credits))
}

// updateBalancesSQL sets the balance and pending totals of each account
// $1[i] to $2[i], $3[i] and $4[i].
const updateBalancesSQL = `UPDATE accounts a SET balance = v.balance, pending_debits = v.debits, pending_credits = v.credits
	FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(id, balance, debits, credits) WHERE a.id = v.id`

// metadataText returns metadata as JSON text, without allocating for none.
func metadataText(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	return string(holdfast.MetadataJSON(m))
}
