package postgres_test

import (
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// A hold made through one service (replica) is posted through another,
// which never saw it made and reads it from the database; the first, which
// remembers it, still refuses to resolve it again: what it remembers only
// names the accounts, the batch decides.
func TestHold_ResolvedThroughAnotherReplica(t *testing.T) {
	t.Parallel()
	bothModesHolds(t, func(t *testing.T, l *ledger, _ *clock) {
		other := &ledger{db: l.db, tenant: l.tenant, accounts: l.accounts,
			transfers: MustTransfers(t, l.db, postgres.TransferConfig{GroupCommit: true, Writer: postgres.WriterConfig{MaxBatch: 64}})}
		_, alice, shop := l.funded(t)
		h, err := l.hold(alice, shop, 30, 0)
		if err != nil {
			t.Fatal(err)
		}
		posted, err := other.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{Amount: 20})
		if err != nil {
			t.Fatalf("post through the other replica: %v", err)
		}
		if posted.Amount != 20 || posted.PendingID != h.ID || posted.DebitAccountID != alice.ID || posted.CreditAccountID != shop.ID {
			t.Errorf("post: %+v", posted)
		}
		_, err = l.resolve(h, holdfast.StatusVoided, holdfast.TransferResolve{})
		wantCode(t, "void through the replica that made the hold, after the post", err, holdfast.EALREADYPOSTED)
		_, err = l.resolve(h, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "second post through the replica that made the hold", err, holdfast.EALREADYPOSTED)

		h2, err := l.hold(alice, shop, 5, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.resolve(h2, holdfast.StatusVoided, holdfast.TransferResolve{}); err != nil {
			t.Fatalf("void through the replica that made the hold: %v", err)
		}
		_, err = other.resolve(h2, holdfast.StatusPosted, holdfast.TransferResolve{})
		wantCode(t, "post through the other replica after the void", err, holdfast.EALREADYVOIDED)
		if got := l.account(t, alice); got.PendingDebits != 0 {
			t.Errorf("alice's pending debits %d, want 0", got.PendingDebits)
		}
		AssertLedgerConsistent(t, l.db, l.tenant)
	})
}
