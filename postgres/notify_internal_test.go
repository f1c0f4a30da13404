package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// A batch committed while a relay of this process listens wakes that relay
// itself and does not notify: a notifying transaction holds, through its
// commit, a lock every other notifying transaction waits for, so two
// batches' commits could not flush together. With no relay listening here,
// the batch notifies as every other insert into the outbox does, for the
// relays of other replicas.
func TestBatch_WakesLocalRelayInsteadOfNotifying(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, tn, house, shop := houseAndShop(t, "notify")
	svc := NewTransferService(db)
	transfer := func() {
		t.Helper()
		if _, _, err := svc.CreateTransfers(ctx, holdfast.TransferRequest{TenantID: tn.ID, Transfers: []holdfast.TransferCreate{
			{DebitAccountID: house.ID, CreditAccountID: shop.ID, Amount: 10, Currency: "USD"}}}); err != nil {
			t.Fatal(err)
		}
	}

	// Another replica's view: every notification on the channel, in commit order.
	other, err := pgx.ConnectConfig(ctx, db.Pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if _, err := other.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
		t.Fatal(err)
	}
	// next returns the payload of the next notification. A marker sent after
	// a batch commits tells whether the batch notified: it comes first if not.
	next := func() string {
		t.Helper()
		n, err := other.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Payload
	}
	mark := func(payload string) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, "SELECT pg_notify($1, $2)", OutboxChannel, payload); err != nil {
			t.Fatal(err)
		}
	}

	// A relay of this process listens.
	var wakes atomic.Int64
	listenCtx, stopListening := context.WithCancel(ctx)
	listened := make(chan error, 1)
	go func() { listened <- db.ListenOutbox(listenCtx, func() { wakes.Add(1) }) }()
	for wakes.Load() == 0 { // its first wake comes once it is registered
		select {
		case err := <-listened:
			t.Fatalf("ListenOutbox returned: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	before := wakes.Load()
	transfer()
	if got := wakes.Load(); got != before+1 {
		t.Errorf("the relay of this process was woken %d times by a committed batch, want once", got-before)
	}
	mark("after the local batch")
	if got := next(); got != "after the local batch" {
		t.Errorf("a batch with a relay listening in its process notified (payload %q came before the marker)", got)
	}

	// No relay listens here any more: the batch notifies.
	stopListening()
	if err := <-listened; err != nil {
		t.Fatal(err)
	}
	transfer()
	mark("after the batch")
	if got := next(); got != "" {
		t.Errorf("with no relay listening in its process, a batch did not notify (first notification %q)", got)
	}
	if got := next(); got != "after the batch" {
		t.Errorf("notification %q, want the marker", got)
	}
}
