package ratelimit

import (
	"testing"
	"time"
)

func TestQuota_EventsAndBytesEachRefuseAndARefusalCostsNothing(t *testing.T) {
	q, err := NewQuota(QuotaConfig{Events: 100, Bytes: 10_000, Period: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	q.now = func() time.Time { return now }
	ctx := t.Context()

	if d, _ := q.Allow(ctx, "a", 60, 1000); !d.Allowed || d.Remaining != 40 {
		t.Fatalf("60 of 100 events: %+v", d)
	}
	// 50 more events pass the events bucket: refused, with the wait for 10 events.
	d, _ := q.Allow(ctx, "a", 50, 1000)
	if d.Allowed || d.RetryAfter != 6*time.Second {
		t.Fatalf("50 more events: %+v, want refused for 6s", d)
	}
	// The refusal took nothing: 40 still fit.
	if d, _ := q.Allow(ctx, "a", 40, 1000); !d.Allowed {
		t.Fatalf("the 40 left: %+v", d)
	}
	// The bytes bucket refuses on its own; another key is untouched.
	if d, _ := q.Allow(ctx, "b", 1, 20_000); d.Allowed || !d.Bytes {
		t.Fatalf("20,000 bytes of a 10,000-byte quota: %+v, want refused by the bytes bucket", d)
	}
	if d, _ := q.Allow(ctx, "b", 100, 10_000); !d.Allowed {
		t.Fatalf("a whole period's quota at once: %+v", d)
	}
	// A period later the buckets are full again.
	now = now.Add(time.Minute)
	if d, _ := q.Allow(ctx, "a", 100, 10_000); !d.Allowed {
		t.Fatalf("after a period: %+v", d)
	}
}
