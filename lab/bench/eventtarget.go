package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/events"
)

// EventTarget is a running Holdfast whose event log a benchmark drives:
// its API, and hooks into its consumer groups.
type EventTarget struct {
	URL, Key string
	HTTP     *http.Client
	// Lag returns the consumer groups' largest lag, in events.
	Lag func(ctx context.Context) (int64, error)
	// Applied returns what the groups applied for one tenant: audit
	// records, and the analytics count of events.
	Applied func(ctx context.Context, tenant string) (audit, analytics int64, err error)
	// Pause and Resume steer both consumer groups.
	Pause, Resume func(ctx context.Context) error
}

// eventBody returns a POST /v1/events body of n client events of typical
// size (a payment attempt with a few properties, about 150 bytes each).
func eventBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"payment.attempted","properties":{"amount":%d,"currency":"EUR","method":"card","card_brand":"visa","session":"s-%06d"}}`, 100+i, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// PostEvents sends one batch and returns how many events the log accepted
// (0 on a refusal).
func (t *EventTarget) PostEvents(ctx context.Context, body []byte) (int, error) {
	n, _, err := t.postEvents(ctx, body)
	return n, err
}

// postEvents is PostEvents that also returns the response's status.
func (t *EventTarget) postEvents(ctx context.Context, body []byte) (int, int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", t.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.Key)
	req.Header.Set("Content-Type", "application/json")
	c := t.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return 0, resp.StatusCode, nil
	}
	var out struct {
		Accepted int `json:"accepted"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, resp.StatusCode, err
	}
	return out.Accepted, resp.StatusCode, nil
}

// AdminTarget returns the EventTarget of a Holdfast at url (as the tenant
// of key) whose consumer groups admin steers and whose database pool
// counts what they applied.
func AdminTarget(url, key string, admin *events.Admin, pool *pgxpool.Pool) *EventTarget {
	steer := func(ctx context.Context, pause bool) error {
		list, err := admin.ListConsumers(ctx)
		if err != nil {
			return err
		}
		for _, c := range list {
			if pause {
				err = admin.PauseConsumer(ctx, c.Name, time.Time{}, "lab")
			} else {
				err = admin.ResumeConsumer(ctx, c.Name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return &EventTarget{
		URL: url, Key: key,
		HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		Lag: func(ctx context.Context) (int64, error) {
			list, err := admin.ListConsumers(ctx)
			if err != nil {
				return 0, err
			}
			var lag int64
			for _, c := range list {
				lag = max(lag, int64(c.LagMessages))
			}
			return lag, nil
		},
		Applied: func(ctx context.Context, tenant string) (audit, analytics int64, err error) {
			err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_records WHERE tenant_id = $1),
				(SELECT coalesce(sum(count), 0) FROM analytics_minutes WHERE tenant_id = $1)`, tenant).Scan(&audit, &analytics)
			return audit, analytics, err
		},
		Pause:  func(ctx context.Context) error { return steer(ctx, true) },
		Resume: func(ctx context.Context) error { return steer(ctx, false) },
	}
}
