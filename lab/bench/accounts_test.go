package bench

import (
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/dbtest"
)

// TestSeedAccounts: every account holds its funding, the equity account
// holds minus the total, and the ledger is consistent at once.
func TestSeedAccounts(t *testing.T) {
	t.Parallel()
	db, tenant, _ := setup(t)
	const n, funding = 5, 1_000
	funded := MustSeed(t, db, tenant, n, funding, false)
	empty := MustSeed(t, db, tenant, 2, 0, true)
	dbtest.MustVerify(t, db, tenant)
	for _, id := range funded {
		if got := dbtest.Balance(t, db, id); got != funding {
			t.Errorf("account %s: balance %d, want %d", id, got, funding)
		}
	}
	for _, id := range empty {
		if got := dbtest.Balance(t, db, id); got != 0 {
			t.Errorf("unfunded account %s: balance %d, want 0", id, got)
		}
	}
	if got := dbtest.MustCount(t, db, "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND allow_overdraft AND id = ANY($2::uuid[])", tenant, empty); got != 2 {
		t.Errorf("%d of the 2 accounts seeded with overdraft allow it", got)
	}
	if got := dbtest.MustCount(t, db, "SELECT count(*) FROM accounts WHERE tenant_id = $1 AND allow_overdraft AND balance = $2", tenant, -n*funding); got != 1 {
		t.Errorf("%d equity accounts hold %d, want 1", got, -n*funding)
	}
	if got := dbtest.LedgerRows(t, db, tenant); got != [3]int64{n, 2 * n, 0} {
		t.Errorf("transfers, entries, keys = %v, want [%d %d 0]", got, n, 2*n)
	}
}
