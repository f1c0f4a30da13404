package naive

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/receipts"
)

// ReceiptWorkers is the receipt spike's naive consumer: for every message, at once, a
// goroutine that opens its own database connection, processes the image
// and acknowledges; nothing bounds how many run. A refused connection is
// NAKed for immediate redelivery, so refusals come back as a herd. It is
// real code that really fails, never part of the service.
type ReceiptWorkers struct {
	DBURL string
	Blobs receipts.BlobStore
	Cons  njs.Consumer

	running, conns         atomic.Int64
	refused, errs, retries atomic.Int64
	consume                njs.ConsumeContext
	wg                     sync.WaitGroup
}

// Start consumes until Stop.
func (n *ReceiptWorkers) Start(ctx context.Context) error {
	cc, err := n.Cons.Consume(func(m njs.Msg) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.running.Add(1)
			defer n.running.Add(-1)
			if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
				n.retries.Add(1)
			}
			if err := n.handle(ctx, m); err != nil {
				n.errs.Add(1)
				m.Nak() // right back: the herd
				return
			}
			m.Ack()
		}()
	}, njs.PullMaxMessages(5000))
	if err != nil {
		return err
	}
	n.consume = cc
	return nil
}

// Stop stops consuming and waits for the goroutines.
func (n *ReceiptWorkers) Stop() {
	if n.consume != nil {
		n.consume.Stop()
	}
	n.wg.Wait()
}

// Running returns the goroutines at work, and the connections they hold.
func (n *ReceiptWorkers) Running() (int64, int64) { return n.running.Load(), n.conns.Load() }

// Counters returns refused connections, errors and retries.
func (n *ReceiptWorkers) Counters() (int64, int64, int64) {
	return n.refused.Load(), n.errs.Load(), n.retries.Load()
}

func (n *ReceiptWorkers) handle(ctx context.Context, m njs.Msg) error {
	var job holdfast.ReceiptJob
	if err := json.Unmarshal(m.Data(), &job); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, n.DBURL)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "53300" || pe.Code == "53400") || strings.Contains(err.Error(), "too many clients") {
			n.refused.Add(1)
		}
		return err
	}
	n.conns.Add(1)
	defer func() { conn.Close(context.WithoutCancel(ctx)); n.conns.Add(-1) }()
	var tenantName string
	var created time.Time
	if err := conn.QueryRow(ctx, `SELECT t.name, r.created_at FROM receipts r JOIN tenants t ON t.id = r.tenant_id WHERE r.id = $1`,
		job.ReceiptID).Scan(&tenantName, &created); err != nil {
		return err
	}
	f, _, err := n.Blobs.Open(ctx, job.OriginalKey)
	if err != nil {
		return err
	}
	src, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	vs, err := media.ProcessContext(ctx, src, media.Options{Tenant: tenantName, Date: created})
	if err != nil {
		return err
	}
	variants := map[string]map[string]any{}
	for _, v := range vs.All() {
		key, err := n.Blobs.PutBytes(ctx, v.Data)
		if err != nil {
			return err
		}
		variants[v.Name] = map[string]any{"key": key, "content_type": v.ContentType(), "width": v.Width, "height": v.Height, "size": len(v.Data)}
	}
	b, _ := json.Marshal(variants)
	_, err = conn.Exec(ctx, `UPDATE receipts SET status = 'ready', variants = $2, attempts = attempts + 1, updated_at = now() WHERE id = $1`, job.ReceiptID, b)
	return err
}
