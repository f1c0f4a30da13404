package holdfast_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// The errors an Idempotency-Key keeps are those a retry of the same request
// would only get again; everything else releases the key for a retry.
func TestIsFinal_OnlyAnswersARetryWouldRepeat(t *testing.T) {
	t.Parallel()
	final := []string{holdfast.ENOTFOUND, holdfast.EINSUFFICIENT, holdfast.ECURRENCY, holdfast.ELIMIT,
		holdfast.ETRANSFEREXISTS, holdfast.EIDEMPOTENCYREUSED, holdfast.EIMAGETOOLARGE}
	passing := []string{holdfast.EINVALID, holdfast.EUNAUTHORIZED, holdfast.ECONFLICT, holdfast.EIDEMPOTENCYINUSE,
		holdfast.EOVERLOADED, holdfast.EUNAVAILABLE, holdfast.EOUTCOMEUNKNOWN, holdfast.EKEYLIMIT, holdfast.EINTERNAL}
	for _, code := range final {
		if err := fmt.Errorf("wrapped: %w", holdfast.Errorf(code, "x")); !holdfast.IsFinal(err) {
			t.Errorf("%s is not final, want final", code)
		}
	}
	for _, code := range passing {
		if holdfast.IsFinal(holdfast.Errorf(code, "x")) {
			t.Errorf("%s is final, want the key released", code)
		}
	}
	for _, err := range []error{nil, errors.New("connection refused"), context.Canceled, context.DeadlineExceeded} {
		if holdfast.IsFinal(err) {
			t.Errorf("IsFinal(%v) = true, want false", err)
		}
	}
}

// An outcome keeps a success as JSON of its domain type and a final error
// as its code, message and extensions, with the request's id; a stored
// outcome reads back as it was, numbers in extensions as written.
func TestNewOutcome_KeepsTheResultOrTheFinalError(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	transfers := []*holdfast.Transfer{{ID: idA, TenantID: idC, DebitAccountID: idB, CreditAccountID: idC, Amount: 5, Currency: "USD", CreatedAt: at}}
	o, err := holdfast.NewOutcome("req-1", transfers, nil)
	if err != nil || o == nil || o.Err != nil || o.RequestID != "req-1" {
		t.Fatalf("success: %+v, %v", o, err)
	}
	var back []*holdfast.Transfer
	if err := o.Decode(&back); err != nil || len(back) != 1 {
		t.Fatal(err)
	}
	back[0].TenantID = transfers[0].TenantID // not part of the JSON
	if !reflect.DeepEqual(back[0], transfers[0]) {
		t.Fatalf("decoded %+v, want %+v", back[0], transfers[0])
	}

	linked := &holdfast.Error{Code: holdfast.EINSUFFICIENT, Message: "transfers[1] failed", Extensions: map[string]any{"index": 1},
		Err: errors.New("a cause never stored")}
	o, err = holdfast.NewOutcome("req-2", nil, fmt.Errorf("create transfer: %w", linked))
	if err != nil || o == nil || len(o.Result) != 0 || o.Err == nil || o.Err.Err != nil {
		t.Fatalf("final error: %+v, %v", o, err)
	}
	stored, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"request_id":"req-2","error":{"code":"insufficient-funds","message":"transfers[1] failed","extensions":{"index":1}}}`
	if string(stored) != want {
		t.Fatalf("stored %s, want %s", stored, want)
	}
	read, err := holdfast.DecodeOutcome(stored)
	if err != nil {
		t.Fatal(err)
	}
	if ext, _ := json.Marshal(read.Err.Extensions); read.RequestID != "req-2" || read.Err.Code != holdfast.EINSUFFICIENT || string(ext) != `{"index":1}` {
		t.Fatalf("read back %+v (extensions %s)", read, ext)
	}

	for _, err := range []error{holdfast.Errorf(holdfast.EINVALID, "amount"), holdfast.Errorf(holdfast.EOVERLOADED, "busy"), context.Canceled} {
		if o, e := holdfast.NewOutcome("req-3", nil, err); o != nil || e != nil {
			t.Errorf("NewOutcome(%v) = %+v, %v; want nothing to store", err, o, e)
		}
	}
	if _, err := holdfast.NewOutcome("req-4", func() {}, nil); err == nil {
		t.Error("a result that cannot be encoded: no error")
	}
}

// A key's stored form never holds an API key's secret.
func TestAPIKeyRedacted_LeavesOutTheSecretOnly(t *testing.T) {
	t.Parallel()
	k := &holdfast.APIKey{ID: idA, TenantID: idB, Prefix: "hf_ABCDEF", Secret: "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CreatedAt: time.Unix(0, 0).UTC()}
	r := k.Redacted()
	if r.Secret != "" || k.Secret == "" || r.ID != k.ID || r.Prefix != k.Prefix || r.TenantID != k.TenantID || !r.CreatedAt.Equal(k.CreatedAt) {
		t.Fatalf("Redacted() = %+v of %+v", r, k)
	}
}

// EncodeOutcome returns NewOutcome's outcome in its stored form.
func TestEncodeOutcome_IsTheOutcomeAsJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		result any
		err    error
	}{
		{"transfers", []*holdfast.Transfer{{ID: idA, Amount: 1, Currency: "USD", CreatedAt: at}}, nil},
		{"an API key", &holdfast.APIKey{ID: idA, Prefix: "hf_ABCDEF", CreatedAt: at}, nil},
		{"no request id", "x", nil},
		{"a final error", nil, &holdfast.Error{Code: holdfast.ELIMIT, Message: "m", Extensions: map[string]any{"index": 3}}},
		{"an error not final", nil, holdfast.Errorf(holdfast.EOVERLOADED, "m")},
		{"HTML in a string", "<a&b>", nil},
	} {
		id := "req"
		if tc.name == "no request id" {
			id = ""
		}
		o, err := holdfast.NewOutcome(id, tc.result, tc.err)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		if o != nil {
			if want, err = json.Marshal(o); err != nil {
				t.Fatal(err)
			}
		}
		got, err := holdfast.EncodeOutcome(id, tc.result, tc.err)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: EncodeOutcome = %s, %v; want %s", tc.name, got, err, want)
		}
	}
}

// A result that cannot be encoded is an error.
func TestEncodeOutcome_FailsOnAResultNotJSON(t *testing.T) {
	t.Parallel()
	if b, err := holdfast.EncodeOutcome("req", func() {}, nil); err == nil || b != nil {
		t.Fatalf("EncodeOutcome = %q, %v; want an error", b, err)
	}
}
