package events

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func testEvent() holdfast.Event {
	return holdfast.Event{
		ID: "0190a0b0-1111-7222-8333-444455556666", Type: "transfer.created", Version: 1, Source: holdfast.SourceLedger,
		TenantID: "0190a0b0-1111-7222-8333-444455556667", OccurredAt: time.Date(2026, 11, 28, 16, 0, 0, 123456000, time.UTC),
		Data: json.RawMessage(`{"id":"0190a0b0-1111-7222-8333-444455556668","debit_account_id":"0190a0b0-1111-7222-8333-444455556669",` +
			`"credit_account_id":"0190a0b0-1111-7222-8333-444455556660","amount":42,"currency":"USD","note":"caf\u00e9 \"quoted\""}`),
	}
}

func TestEnvelope_RoundTrip(t *testing.T) {
	in := testEvent()
	raw := appendEvent(nil, &in)
	var out holdfast.Event
	if err := unmarshalEvent(raw, &out); err != nil {
		t.Fatalf("unmarshalEvent(%s): %v", raw, err)
	}
	if out.ID != in.ID || out.Type != in.Type || out.Version != in.Version || out.Source != in.Source ||
		out.TenantID != in.TenantID || !out.OccurredAt.Equal(in.OccurredAt) || string(out.Data) != string(in.Data) {
		t.Fatalf("round trip changed the event:\n in  %+v\n out %+v", in, out)
	}
	// encoding/json reads the same envelope the same way.
	var v1 holdfast.Event
	if err := json.Unmarshal(raw, &v1); err != nil || v1.ID != out.ID || !v1.OccurredAt.Equal(out.OccurredAt) || string(v1.Data) != string(out.Data) {
		t.Fatalf("encoding/json read %+v (%v), v2 %+v", v1, err, out)
	}
}

// envelopesSize covers the envelopes of a packed message, so its buffer is
// allocated once: the longest times, the largest version, empty data.
func TestEnvelopesSize_CoversTheEnvelopes(t *testing.T) {
	long, short := testEvent(), testEvent()
	long.Version = math.MaxInt
	long.OccurredAt = time.Date(2026, 11, 28, 16, 0, 0, 123456789, time.FixedZone("", -(11*3600+59*60)))
	short.Data = nil
	all := []holdfast.Event{long, short, testEvent()}
	// Each alone too, so that one envelope's slack cannot hide another's shortfall.
	for _, events := range [][]holdfast.Event{all, all[:1], all[1:2], all[2:]} {
		var b []byte
		for i := range events {
			if i > 0 {
				b = append(b, '\n')
			}
			b = appendEvent(b, &events[i])
		}
		if n := envelopesSize(events); n < len(b) {
			t.Errorf("envelopesSize %d, %d envelopes take %d bytes", n, len(events), len(b))
		}
	}
}

func TestEnvelope_Malformed(t *testing.T) {
	for _, raw := range []string{``, `{`, `[]`, `{"id":1}`, `{"occurred_at":"yesterday"}`, `{"id":"a","id":"b"}`, "{\"id\":\"\xff\"}"} {
		var e holdfast.Event
		if err := unmarshalEvent([]byte(raw), &e); err == nil {
			t.Errorf("unmarshalEvent(%q) = nil error, want one", raw)
		}
	}
}

// BenchmarkUnmarshalEvent reads one ledger event's envelope with
// unmarshalEvent and, as the baseline, with encoding/json (v1).
func BenchmarkUnmarshalEvent(b *testing.B) {
	in := testEvent()
	raw := appendEvent(nil, &in)
	b.Run("holdfast", func(b *testing.B) {
		for b.Loop() {
			var e holdfast.Event
			if err := unmarshalEvent(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var e holdfast.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
