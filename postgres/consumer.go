package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// ConsumerStore keeps what consumer groups share across replicas: the
// stream sequences each has applied and the identity of the stream they
// are counted in, whether each is paused, and which streams the event log
// is bound to.
type ConsumerStore struct{ db *DB }

// NewConsumerStore returns a ConsumerStore on db.
func NewConsumerStore(db *DB) *ConsumerStore { return &ConsumerStore{db: db} }

// EnsureGroup creates the group's row if it has none, recording the stream
// it consumes and that stream's identity (none when identity is ""), records
// them in a row that has none yet (a group that predates the binding), and
// returns the group's state: a row bound to another stream keeps it, and
// the caller compares.
func (s *ConsumerStore) EnsureGroup(ctx context.Context, name, stream, identity string) (*holdfast.ConsumerGroupState, error) {
	_, err := s.db.Pool.Exec(ctx, `INSERT INTO consumer_groups (name, stream, stream_identity) VALUES ($1, nullif($2, ''), nullif($3, ''))
		ON CONFLICT (name) DO UPDATE SET stream = excluded.stream, stream_identity = excluded.stream_identity, updated_at = now()
		WHERE consumer_groups.stream_identity IS NULL AND excluded.stream_identity IS NOT NULL`, name, stream, identity)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", name, err)
	}
	return s.State(ctx, name)
}

// State returns the group's state; ENOTFOUND if it has none.
func (s *ConsumerStore) State(ctx context.Context, name string) (*holdfast.ConsumerGroupState, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT name, coalesce(stream, ''), coalesce(stream_identity, ''), applied_floor, last_applied,
		paused, paused_until, pause_reason FROM consumer_groups WHERE name = $1`, name)
	st, err := pgx.CollectExactlyOneRow(rows, scanGroupState)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", name, contextError(ctx, err))
	}
	return st, nil
}

// GroupsOn returns the state of every group recorded on stream: the groups
// whose applied sequences bound what the stream's retention may purge.
func (s *ConsumerStore) GroupsOn(ctx context.Context, stream string) ([]*holdfast.ConsumerGroupState, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT name, coalesce(stream, ''), coalesce(stream_identity, ''), applied_floor, last_applied,
		paused, paused_until, pause_reason FROM consumer_groups WHERE stream = $1 ORDER BY name`, stream)
	list, err := pgx.CollectRows(rows, scanGroupState)
	if err != nil {
		return nil, fmt.Errorf("consumer groups on %s: %w", stream, contextError(ctx, err))
	}
	return list, nil
}

func scanGroupState(r pgx.CollectableRow) (*holdfast.ConsumerGroupState, error) {
	var st holdfast.ConsumerGroupState
	var floor, last int64
	err := r.Scan(&st.Name, &st.Stream, &st.StreamIdentity, &floor, &last, &st.Paused, &st.PausedUntil, &st.PauseReason)
	st.AppliedFloor, st.LastApplied = uint64(floor), uint64(last)
	return &st, err
}

// StreamBinding returns the identity of the stream the event log is bound
// to under name, and since when; "" if none is recorded.
func (s *ConsumerStore) StreamBinding(ctx context.Context, name string) (string, time.Time, error) {
	var identity string
	var at time.Time
	err := s.db.Pool.QueryRow(ctx, "SELECT identity, bound_at FROM event_streams WHERE name = $1", name).Scan(&identity, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("stream %s binding: %w", name, contextError(ctx, err))
	}
	return identity, at, nil
}

// BindStream records identity as the stream's unless one is recorded
// already, and returns the identity recorded and since when: identity
// itself, or another one the caller must not use the stream under.
func (s *ConsumerStore) BindStream(ctx context.Context, name, identity string) (string, time.Time, error) {
	if identity == "" {
		return "", time.Time{}, errors.New("bind stream: no identity")
	}
	var recorded string
	var at time.Time
	// The inserted row is not visible to the rest of the statement: the
	// union is the new row or the one already there.
	err := s.db.Pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO event_streams (name, identity) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING identity, bound_at)
		SELECT identity, bound_at FROM ins UNION ALL SELECT identity, bound_at FROM event_streams WHERE name = $1 LIMIT 1`,
		name, identity).Scan(&recorded, &at)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("bind stream %s: %w", name, contextError(ctx, err))
	}
	return recorded, at, nil
}

// AdoptStream records identity as the stream's, replacing the identity
// recorded (returned, "" if none), and, in the same transaction, resets the
// progress of the groups that consume it (those recorded on it, and those
// named in groups): they apply the stream from its first message. It
// returns the groups reset. The replicas must be stopped: a running
// group's next batch is refused, as its stream is no longer the one bound.
func (s *ConsumerStore) AdoptStream(ctx context.Context, name, identity string, groups []string) (string, []string, error) {
	if identity == "" {
		return "", nil, errors.New("adopt stream: no identity")
	}
	var previous string
	var reset []string
	err := pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "SELECT identity FROM event_streams WHERE name = $1 FOR UPDATE", name).Scan(&previous)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO event_streams (name, identity) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET identity = excluded.identity, bound_at = now()`, name, identity); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO consumer_groups (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`,
			TextArray(groups)); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `UPDATE consumer_groups SET stream = $1, stream_identity = $2, applied_floor = 0, last_applied = 0,
			updated_at = now() WHERE stream = $1 OR name = ANY($3::text[]) RETURNING name`, name, identity, TextArray(groups))
		reset, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM consumer_applied WHERE name = ANY($1::text[])", TextArray(reset))
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("adopt stream %s: %w", name, contextError(ctx, err))
	}
	sort.Strings(reset)
	return previous, reset, nil
}

// Pause pauses the group in every replica: until Resume when until is
// zero, else until then. ENOTFOUND for an unknown group.
func (s *ConsumerStore) Pause(ctx context.Context, name string, until time.Time, reason string) error {
	ctx = Patient(ctx) // a pause is the remedy for a busy pool: it waits its turn
	var tag interface{ RowsAffected() int64 }
	var err error
	if until.IsZero() {
		tag, err = s.db.Pool.Exec(ctx, `UPDATE consumer_groups SET paused = true, pause_reason = $2, updated_at = now() WHERE name = $1`, name, reason)
	} else {
		// An automatic pause never shortens a longer one, nor lifts an operator's.
		tag, err = s.db.Pool.Exec(ctx, `UPDATE consumer_groups SET paused_until = greatest(paused_until, $2),
			pause_reason = CASE WHEN paused THEN pause_reason ELSE $3 END, updated_at = now() WHERE name = $1`, name, until, reason)
	}
	if err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	return nil
}

// Resume lifts every pause of the group. ENOTFOUND for an unknown group.
func (s *ConsumerStore) Resume(ctx context.Context, name string) error {
	tag, err := s.db.Pool.Exec(ctx, `UPDATE consumer_groups SET paused = false, paused_until = NULL, pause_reason = '',
		updated_at = now() WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("resume %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	return nil
}

// Prune raises the group's floor to floor (the stream's acknowledgement
// floor: everything at or below it was applied and acknowledged, so it is
// never delivered again) and forgets the sequences below it.
func (s *ConsumerStore) Prune(ctx context.Context, name string, floor uint64) error {
	return pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		var cur int64
		if err := tx.QueryRow(ctx, `UPDATE consumer_groups SET applied_floor = greatest(applied_floor, $2)
			WHERE name = $1 RETURNING applied_floor`, name, int64(floor)).Scan(&cur); err != nil {
			return fmt.Errorf("prune %s: %w", name, err)
		}
		_, err := tx.Exec(ctx, "DELETE FROM consumer_applied WHERE name = $1 AND seq <= $2", name, cur)
		return err
	})
}

// applyOnce runs effect in one transaction with the record of the batch's
// sequences (one a stream message, whatever number of events it holds);
// effect is given only the deliveries the group has not applied before, so
// a redelivery changes nothing. The sequences are those of the stream the
// deliveries name (StreamID): unless it is the stream the group's progress
// is recorded in, nothing is applied and the batch fails with ECONFLICT, so
// that a replaced stream's messages are never acknowledged as applied. On a
// deadlock it runs again.
func (s *ConsumerStore) applyOnce(ctx context.Context, name string, batch []holdfast.EventDelivery,
	effect func(ctx context.Context, tx pgx.Tx, fresh []holdfast.EventDelivery) error) error {
	if len(batch) == 0 {
		return nil
	}
	seqs := make([]int64, len(batch))
	var top int64
	identity := batch[0].StreamID
	for i, d := range batch {
		seqs[i] = int64(d.Seq)
		top = max(top, seqs[i])
		if d.StreamID != identity {
			return fmt.Errorf("%s: apply events: a batch from two streams (%q and %q)", name, identity, d.StreamID)
		}
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `INSERT INTO consumer_applied (name, seq)
				SELECT $1, s FROM unnest($2::bigint[]) AS s
				WHERE s > (SELECT applied_floor FROM consumer_groups WHERE name = $1)
				ORDER BY s ON CONFLICT DO NOTHING RETURNING seq`, name, Int8Array(seqs))
			fresh, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			if len(fresh) > 0 {
				isFresh := make(map[int64]bool, len(fresh))
				for _, s := range fresh {
					isFresh[s] = true
				}
				// Every event of a fresh message (sequence), each once: a
				// message twice in one batch applies once.
				todo := make([]holdfast.EventDelivery, 0, len(batch))
				type pos struct{ seq, index int64 }
				taken := make(map[pos]bool, len(batch))
				for _, d := range batch {
					p := pos{int64(d.Seq), int64(d.Index)}
					if isFresh[p.seq] && !taken[p] {
						todo = append(todo, d)
						taken[p] = true
					}
				}
				if err := effect(ctx, tx, todo); err != nil {
					return err
				}
			}
			// Also for a batch applied before: its sequences were counted in
			// the group's stream only if that is the deliveries' stream. The
			// row lock makes an adoption of another stream wait, or this
			// check see it.
			tag, err := tx.Exec(ctx, `UPDATE consumer_groups SET last_applied = greatest(last_applied, $2), updated_at = now()
				WHERE name = $1 AND stream_identity IS NOT DISTINCT FROM nullif($3, '')`, name, top, identity)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return holdfast.Errorf(holdfast.ECONFLICT, "consumer group %s: its progress is not recorded in the stream delivering these events (identity %q); nothing was applied", name, identity)
			}
			return nil
		})
		if !retryable(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s: apply events: %w", name, contextError(ctx, err))
	}
	return nil
}
