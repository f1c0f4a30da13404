package console

import (
	"context"
	"math"
	"net/http"

	"github.com/holdfast/holdfast"
)

// deadLetterPage is how many dead letters the receipts page lists.
const deadLetterPage = 50

// receiptsPage shows the receipt pipeline: queue depth, jobs in flight
// against the cap (from the metrics, which JetStream answers at most every
// 5 s), and the oldest dead letters with redrive.
func (c *Console) receiptsPage() *page {
	if c.cfg.DeadLetters == nil {
		return nil
	}
	dead := &cached[[]*holdfast.DeadLetter]{ttl: c.cfg.CacheTTL, load: func(ctx context.Context) ([]*holdfast.DeadLetter, error) {
		list, _, err := c.cfg.DeadLetters.ListDeadLetters(ctx, "", holdfast.Page{Limit: deadLetterPage})
		return list, err
	}}
	return &page{Path: "/console/receipts/", Title: "Receipts", Template: "receipts.html",
		Data: func(r *http.Request) (any, error) {
			f, err := c.figures.get(r.Context())
			if err != nil && f == nil {
				return nil, err
			}
			list, err := dead.get(r.Context())
			if err != nil {
				return nil, err
			}
			gauge := func(name string) float64 {
				if v, ok := f.sum(name, nil); ok {
					return v
				}
				return math.NaN()
			}
			return map[string]any{
				"Depth": gauge("holdfast_receipt_queue_depth"), "InFlight": gauge("holdfast_receipt_jobs_in_flight"),
				"Cap": gauge("holdfast_receipt_jobs_cap"), "Dead": gauge("holdfast_receipt_dead_letters"),
				"DeadLetters": list, "Listed": deadLetterPage,
			}, nil
		},
		Actions: map[string]func(*http.Request) error{
			"/console/receipts/dead-letters/{id}/redrive": func(r *http.Request) error {
				id := r.PathValue("id")
				if err := holdfast.ValidID("id", id); err != nil {
					return err
				}
				_, err := c.cfg.DeadLetters.Redrive(r.Context(), id)
				dead.invalidate()
				return err
			},
		}}
}
