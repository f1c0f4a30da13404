package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// embeddedNATSLock is the advisory lock of the one replica that may run an
// embedded NATS on a database.
const embeddedNATSLock = 0x6e617473 // "nats"

// EmbeddedNATS is a replica's claim to be the one running an embedded NATS
// on the database: replicas that each embedded their own would each have an
// event stream of their own against one record of progress.
type EmbeddedNATS struct {
	conn *pgx.Conn
}

// ClaimEmbeddedNATS takes the database's claim to an embedded NATS for
// holder (a description of this replica, shown to a replica refused), on a
// connection of its own that holds it until Release or until the process
// ends. It returns ECONFLICT, naming the holder, when another replica holds
// it. Should that connection break, the claim is gone until the next start;
// the event log's stream binding still refuses a second replica's stream.
func ClaimEmbeddedNATS(ctx context.Context, db *DB, holder string) (*EmbeddedNATS, error) {
	conn, err := pgx.ConnectConfig(ctx, db.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("claim embedded NATS: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", embeddedNATSLock).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("claim embedded NATS: %w", err)
	}
	if !ok {
		var other string
		var since time.Time
		err := conn.QueryRow(ctx, "SELECT holder, since FROM embedded_nats").Scan(&other, &since)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("claim embedded NATS: %w", err)
		}
		return nil, holdfast.Errorf(holdfast.ECONFLICT,
			"another replica runs its own embedded NATS on this database (%s, since %s): replicas with a NATS each would each have an event stream of their own; run every replica with --nats-url pointing at one NATS server or cluster",
			other, since.UTC().Format(time.RFC3339))
	}
	if _, err := conn.Exec(ctx, `INSERT INTO embedded_nats (holder, since) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, since = excluded.since`, holder); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("claim embedded NATS: %w", err)
	}
	return &EmbeddedNATS{conn: conn}, nil
}

// Release gives the claim up. Idempotent; safe on nil.
func (c *EmbeddedNATS) Release() {
	if c == nil || c.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Unlocked before closing: the session's locks go only once its backend
	// has exited, a moment after the connection closes, and a restart in
	// that moment would find the claim still held.
	c.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", embeddedNATSLock)
	c.conn.Close(ctx)
	c.conn = nil
}
