package console

import (
	"context"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// OutboxReader reads what waits in the outbox, per topic.
type OutboxReader interface {
	OutboxBacklog(ctx context.Context) ([]holdfast.OutboxBacklog, error)
}

// eventLogPage shows the consumer groups (lag in events and seconds,
// redeliveries, pause state, with pause and resume) and the outbox's
// backlog per topic. Both are read at most once per CacheTTL.
func (c *Console) eventLogPage() *page {
	if c.cfg.Consumers == nil && c.cfg.Outbox == nil {
		return nil
	}
	groups := &cached[[]*holdfast.ConsumerStatus]{ttl: c.cfg.CacheTTL, load: func(ctx context.Context) ([]*holdfast.ConsumerStatus, error) {
		if c.cfg.Consumers == nil {
			return nil, nil
		}
		return c.cfg.Consumers.ListConsumers(ctx)
	}}
	outbox := &cached[[]holdfast.OutboxBacklog]{ttl: c.cfg.CacheTTL, load: func(ctx context.Context) ([]holdfast.OutboxBacklog, error) {
		if c.cfg.Outbox == nil {
			return nil, nil
		}
		return c.cfg.Outbox.OutboxBacklog(ctx)
	}}
	steer := func(pause bool) func(r *http.Request) error {
		return func(r *http.Request) error {
			name := r.PathValue("name")
			var err error
			if pause {
				err = c.cfg.Consumers.PauseConsumer(r.Context(), name, time.Time{}, "paused from the console")
			} else {
				err = c.cfg.Consumers.ResumeConsumer(r.Context(), name)
			}
			groups.invalidate()
			return err
		}
	}
	p := &page{Path: "/console/events/", Title: "Event log", Template: "eventlog.html",
		Data: func(r *http.Request) (any, error) {
			g, err := groups.get(r.Context())
			if err != nil {
				return nil, err
			}
			o, err := outbox.get(r.Context())
			if err != nil {
				return nil, err
			}
			return map[string]any{"Groups": g, "Outbox": o, "Steer": c.cfg.Consumers != nil}, nil
		}}
	if c.cfg.Consumers != nil {
		p.Actions = map[string]func(*http.Request) error{
			"/console/events/{name}/pause":  steer(true),
			"/console/events/{name}/resume": steer(false),
		}
	}
	return p
}
