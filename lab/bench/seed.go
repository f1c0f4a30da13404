package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// seedProgressEvery is how many rows pass between calls of SeedEntries'
// progress function.
const seedProgressEvery = 50_000

// seedMaxAmount bounds the random amounts of seeded transfers (minor units).
const seedMaxAmount = 100_000

// seedDescriptions are the seeded transfers' descriptions: some with commas,
// quotes, non-ASCII text or a leading formula character, as real ones have.
var seedDescriptions = []string{
	"card payment", "Coffee, to go", `Invoice "Q3-2026"`, "Café Zürich ☕", "rent",
	"refund: order #4711", "=HYPERLINK(\"x\")", "payroll, March", "東京 taxi", "-5% discount",
}

// SeedEntries gives the tenant's existing account a history of n more
// entries, quickly: n transfers against a new overdraft counterparty
// account, the first crediting the account enough that it can never go
// negative, then alternating debits and credits of random amounts, dated
// over the past year in increasing order. Transfers and entries are written
// with one COPY each, in one transaction, from rows generated as they are
// sent (memory does not grow with n); both running balances and the final
// balances are correct, so postgres.VerifyLedger holds afterwards. progress,
// if not nil, is called about every 50,000 rows with the number of
// transfers written so far (counting the entries' pass: it reaches n at the
// end). The tables are analyzed afterwards.
func SeedEntries(ctx context.Context, pool *pgxpool.Pool, tenant, account string, n int, progress func(done int)) error {
	if n < 1 {
		return errors.New("bench: SeedEntries needs n ≥ 1")
	}
	if progress == nil {
		progress = func(int) {}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var currency string
	var balance int64
	err = tx.QueryRow(ctx, "SELECT currency, balance FROM accounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
		tenant, account).Scan(&currency, &balance)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("bench: seed entries: account %s of tenant %s not found", account, tenant)
	}
	if err != nil {
		return fmt.Errorf("bench: seed entries: %w", err)
	}
	acct, err := uuid.Parse(account)
	if err != nil {
		return err
	}
	counter := uuid.Must(uuid.NewV7())
	if _, err := tx.Exec(ctx, `INSERT INTO accounts (id, tenant_id, currency, allow_overdraft, balance, metadata, created_at)
		VALUES ($1, $2, $3, true, 0, '{"seeded":"counterparty"}', now())`, [16]byte(counter), tenant, currency); err != nil {
		return fmt.Errorf("bench: seed counterparty: %w", err)
	}
	tenantID, err := uuid.Parse(tenant)
	if err != nil {
		return err
	}
	g := seedGen{tenant: tenantID, account: acct, counter: counter, currency: currency, n: n,
		start: time.Now().Add(-365 * 24 * time.Hour), balance: balance}
	rows := 0
	report := func() {
		rows++
		if rows%seedProgressEvery == 0 {
			progress(rows / 3)
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"transfers"},
		[]string{"tenant_id", "id", "debit_account_id", "credit_account_id", "amount", "currency", "description", "created_at"},
		&seedTransfers{g: g.reset(), report: report}); err != nil {
		return fmt.Errorf("bench: copy transfers: %w", err)
	}
	entries := &seedEntries{g: g.reset(), report: report}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"},
		[]string{"account_id", "transfer_id", "amount", "balance_after", "created_at"}, entries); err != nil {
		return fmt.Errorf("bench: copy entries: %w", err)
	}
	for _, a := range []struct {
		id      uuid.UUID
		balance int64
	}{{acct, entries.g.balance}, {counter, entries.g.counterBalance}} {
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = $1 WHERE id = $2", a.balance, [16]byte(a.id)); err != nil {
			return fmt.Errorf("bench: seed balances: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	progress(n)
	_, err = pool.Exec(ctx, "ANALYZE accounts, transfers, entries")
	return err
}

// seedGen generates the seeded transfers in order, the same sequence each
// time it is reset, so the two COPYs agree without keeping the rows.
type seedGen struct {
	tenant, account, counter uuid.UUID
	currency                 string
	n                        int
	start                    time.Time
	balance                  int64 // the account's, before the first transfer once reset

	rng            *rand.Rand
	i              int
	counterBalance int64
	// the current transfer
	id        [16]byte
	amount    int64
	credit    bool // the account is credited (else debited)
	desc      string
	createdAt time.Time
}

// reset returns a copy of g (which it leaves as it is) positioned before
// the first transfer.
func (g seedGen) reset() *seedGen {
	// Seeded by the new counterparty's random bits: another seeding of
	// the tenant generates other transfer ids.
	g.rng = rand.New(rand.NewPCG(binary.BigEndian.Uint64(g.counter[8:]), uint64(g.n)))
	return &g
}

// next advances to the next transfer and applies it to both balances.
func (g *seedGen) next() bool {
	if g.i >= g.n {
		return false
	}
	year := 365 * 24 * time.Hour
	g.createdAt = g.start.Add(time.Duration(int64(year) / int64(g.n) * int64(g.i))).Truncate(time.Microsecond)
	switch {
	case g.i == 0: // funding: enough that alternating debits can never overdraw
		g.credit, g.amount = true, int64(g.n/2+1)*seedMaxAmount
	default:
		g.credit, g.amount = g.i%2 == 0, 1+g.rng.Int64N(seedMaxAmount)
	}
	g.desc = seedDescriptions[g.rng.IntN(len(seedDescriptions))]
	// A UUIDv7 of createdAt, random bits from the generator.
	binary.BigEndian.PutUint64(g.id[0:8], uint64(g.createdAt.UnixMilli())<<16|uint64(g.rng.Uint32()&0x0fff))
	binary.BigEndian.PutUint64(g.id[8:16], g.rng.Uint64())
	g.id[6] = 0x70 | g.id[6]&0x0f
	g.id[8] = 0x80 | g.id[8]&0x3f
	if g.credit {
		g.balance += g.amount
		g.counterBalance -= g.amount
	} else {
		g.balance -= g.amount
		g.counterBalance += g.amount
	}
	g.i++
	return true
}

// seedTransfers is a pgx.CopyFromSource of the transfers.
type seedTransfers struct {
	g      *seedGen
	report func()
	row    []any
}

func (s *seedTransfers) Next() bool { return s.g.next() }
func (s *seedTransfers) Err() error { return nil }
func (s *seedTransfers) Values() ([]any, error) {
	g := s.g
	debit, credit := g.account, g.counter
	if g.credit {
		debit, credit = credit, debit
	}
	s.row = append(s.row[:0], [16]byte(g.tenant), g.id, [16]byte(debit), [16]byte(credit), g.amount, g.currency, g.desc, g.createdAt)
	s.report()
	return s.row, nil
}

// seedEntries is a pgx.CopyFromSource of both entries of each transfer:
// the debit, then the credit, each with its account's running balance.
type seedEntries struct {
	g      *seedGen
	report func()
	second bool // the current transfer's first entry is written
	row    []any
}

func (s *seedEntries) Next() bool {
	if !s.second && s.g.i > 0 && s.row != nil {
		s.second = true
		return true
	}
	s.second = false
	return s.g.next()
}

func (s *seedEntries) Err() error { return nil }
func (s *seedEntries) Values() ([]any, error) {
	g := s.g
	// The debit entry is written first, then the credit.
	debitIsAccount := !g.credit
	isAccount := debitIsAccount != s.second
	amount := -g.amount
	if s.second {
		amount = g.amount
	}
	id, balance := g.counter, g.counterBalance
	if isAccount {
		id, balance = g.account, g.balance
	}
	s.row = append(s.row[:0], [16]byte(id), g.id, amount, balance, g.createdAt)
	s.report()
	return s.row, nil
}

// ProgressBar returns a progress function for SeedEntries that redraws a
// bar of done out of total on w.
func ProgressBar(w io.Writer, total int) func(done int) {
	const width = 30
	return func(done int) {
		filled := width * done / total
		fmt.Fprintf(w, "\r[%s%s] %3d%% %d/%d", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), 100*done/total, done, total)
	}
}
