package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
)

// ConsumerStore keeps what consumer groups share across replicas: the
// stream sequences each has applied, and whether it is paused.
type ConsumerStore struct{ db *DB }

// NewConsumerStore returns a ConsumerStore on db.
func NewConsumerStore(db *DB) *ConsumerStore { return &ConsumerStore{db: db} }

// EnsureGroup creates the group's row if it has none.
func (s *ConsumerStore) EnsureGroup(ctx context.Context, name string) error {
	_, err := s.db.Pool.Exec(ctx, "INSERT INTO consumer_groups (name) VALUES ($1) ON CONFLICT DO NOTHING", name)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", name, err)
	}
	return nil
}

// State returns the group's state; ENOTFOUND if it has none.
func (s *ConsumerStore) State(ctx context.Context, name string) (*holdfast.ConsumerGroupState, error) {
	rows, _ := s.db.Pool.Query(ctx, `SELECT name, applied_floor, last_applied, paused, paused_until, pause_reason
		FROM consumer_groups WHERE name = $1`, name)
	st, err := pgx.CollectExactlyOneRow(rows, scanGroupState)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.ENOTFOUND, "consumer group %s not found", name)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", name, contextError(ctx, err))
	}
	return st, nil
}

func scanGroupState(r pgx.CollectableRow) (*holdfast.ConsumerGroupState, error) {
	var st holdfast.ConsumerGroupState
	var floor, last int64
	err := r.Scan(&st.Name, &floor, &last, &st.Paused, &st.PausedUntil, &st.PauseReason)
	st.AppliedFloor, st.LastApplied = uint64(floor), uint64(last)
	return &st, err
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
// a redelivery changes nothing. On a deadlock it runs again.
func (s *ConsumerStore) applyOnce(ctx context.Context, name string, batch []holdfast.EventDelivery,
	effect func(ctx context.Context, tx pgx.Tx, fresh []holdfast.EventDelivery) error) error {
	seqs := make([]int64, len(batch))
	var top int64
	for i, d := range batch {
		seqs[i] = int64(d.Seq)
		top = max(top, seqs[i])
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
			if len(fresh) == 0 {
				return nil
			}
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
			_, err = tx.Exec(ctx, `UPDATE consumer_groups SET last_applied = greatest(last_applied, $2), updated_at = now()
				WHERE name = $1`, name, top)
			return err
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
