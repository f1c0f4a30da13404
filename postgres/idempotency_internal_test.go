package postgres

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// openMigratedTo returns a database migrated up to version: the schema a
// migration after it starts from.
func openMigratedTo(t *testing.T, version int) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := MigrateTo(context.Background(), db, version); err != nil {
		t.Fatal(err)
	}
	return db
}

// Migration 0014 rewrites the API key secrets that responses stored before
// it hold into the form a replay now has, and leaves other bodies alone.
func TestMigration_StoredResponsesLoseTheirSecrets(t *testing.T) {
	ctx := context.Background()
	db := openMigratedTo(t, 13)
	const secret = "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	withSecret := `{"tenant":{"id":"t"},"api_key":{"id":"k","prefix":"hf_ABCDEF","secret":"` + secret + `","created_at":"2026-01-01T00:00:00Z"}}` + "\n"
	other := `{"description":"\"secret\":\"` + secret + `\""}` + "\n"
	for key, body := range map[string]string{"key": withSecret, "transfer": other} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
			VALUES ('00000000-0000-0000-0000-000000000000', $1, '\x00', now(), 201, 'application/json', $2)`, key, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	sql, err := migrations.ReadFile("migrations/0014_idempotency_no_secrets.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, string(sql)); err != nil {
		t.Fatal(err)
	}
	read := func(key string) string {
		var b []byte
		if err := db.Pool.QueryRow(ctx, "SELECT response_body FROM idempotency_keys WHERE key = $1", key).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := strings.Replace(withSecret, `"secret":"`+secret+`"`, `"secret":null,"secret_redacted":true`, 1)
	if got := read("key"); got != want {
		t.Errorf("stored key response: %s, want %s", got, want)
	}
	if got := read("transfer"); got != other {
		t.Errorf("a description that quotes a secret changed: %s, want %s", got, other)
	}
}

// Migration 0015 turns the HTTP responses stored for Idempotency-Keys
// before it into outcomes: a success's body into the result of its write
// (a transfer into a list of one, a linked set into its transfers, an
// events batch into its ids, a key shown without its secret into the key
// without one), a problem into its code, message, extensions and request
// id. A body it cannot read becomes an internal error, so the key still
// never runs twice; a key still held stays without an outcome.
func TestMigration_StoredResponsesBecomeOutcomes(t *testing.T) {
	ctx := context.Background()
	db := openMigratedTo(t, 14)
	const (
		transfer = `{"id":"t1","debit_account_id":"a","credit_account_id":"b","amount":7,"currency":"USD","description":"","created_at":"2026-01-02T03:04:05.000006Z"}`
		apiKey   = `{"id":"k","tenant_id":"t","prefix":"hf_ABCDEF","secret":null,"secret_redacted":true,"created_at":"2026-01-01T00:00:00Z"}`
		keyOut   = `{"id":"k","tenant_id":"t","prefix":"hf_ABCDEF","created_at":"2026-01-01T00:00:00Z"}`
		account  = `{"id":"acc","currency":"USD","allow_overdraft":false,"balance":0,"metadata":{"transfers":"x"},"created_at":"2026-01-01T00:00:00Z"}`
		consumer = `{"name":"analytics","pending":0,"in_flight":0,"redelivered":0,"last_applied_seq":9007199254740993,"stream_last_seq":3,"lag_messages":0,"lag_seconds":0.125,"paused":true,"ack_wait":"30s","max_batch":100,"max_ack_pending":1000}`
	)
	cases := []struct {
		key    string
		status int
		ctype  string
		body   string
		want   string // the outcome, as JSON; "" for none
	}{
		{"transfer", 201, "application/json", transfer + "\n", `{"result":[` + transfer + `]}`},
		{"linked", 201, "application/json", `{"transfers":[` + transfer + `,` + transfer + `]}` + "\n", `{"result":[` + transfer + `,` + transfer + `]}`},
		{"account", 201, "application/json", account + "\n", `{"result":` + account + `}`},
		{"api key", 201, "application/json", apiKey + "\n", `{"result":` + keyOut + `}`},
		{"tenant", 201, "application/json", `{"tenant":{"id":"t","name":"n","created_at":"2026-01-01T00:00:00Z"},"api_key":` + apiKey + `}` + "\n",
			`{"result":{"tenant":{"id":"t","name":"n","created_at":"2026-01-01T00:00:00Z"},"api_key":` + keyOut + `}}`},
		{"events", 202, "application/json", `{"accepted":2,"ids":["e1","e2"]}` + "\n", `{"result":["e1","e2"]}`},
		{"consumer", 200, "application/json", consumer + "\n", `{"result":` + consumer + `}`},
		{"linked failure", 422, "application/problem+json",
			`{"detail":"transfers[1] failed, so none was applied: account a has insufficient funds","index":1,"instance":"/v1/linked-transfers","request_id":"r1","status":422,"title":"Insufficient funds","type":"https://holdfast.dev/problems/insufficient-funds"}` + "\n",
			`{"request_id":"r1","error":{"code":"insufficient-funds","message":"transfers[1] failed, so none was applied: account a has insufficient funds","extensions":{"index":1}}}`},
		{"not found", 404, "application/problem+json",
			`{"detail":"account a not found","instance":"/v1/transfers","request_id":"r2","status":404,"title":"Not found","type":"https://holdfast.dev/problems/not-found"}` + "\n",
			`{"request_id":"r2","error":{"code":"not-found","message":"account a not found"}}`},
		{"unreadable", 422, "application/problem+json", `{"x":1}`, `{"error":{"code":"internal","message":"the response stored before this version could not be read"}}`},
		{"held", 0, "", "", ""},
	}
	for _, tc := range cases {
		var err error
		if tc.status == 0 {
			_, err = db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, lock_token, locked_at, created_at)
				VALUES ('00000000-0000-0000-0000-000000000000', $1, '\x00', gen_random_uuid(), now(), now())`, tc.key)
		} else {
			_, err = db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, response_status, response_type, response_body)
				VALUES ('00000000-0000-0000-0000-000000000000', $1, '\x00', now(), $2, $3, $4)`, tc.key, tc.status, tc.ctype, []byte(tc.body))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		var stored []byte
		if err := db.Pool.QueryRow(ctx, "SELECT outcome FROM idempotency_keys WHERE key = $1", tc.key).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.want == "" && stored != nil:
			t.Errorf("%s: outcome %s, want none", tc.key, stored)
		case tc.want == "":
		case stored == nil:
			t.Errorf("%s: no outcome, want %s", tc.key, tc.want)
		default:
			o, err := holdfast.DecodeOutcome(stored)
			if err != nil {
				t.Fatalf("%s: %v", tc.key, err)
			}
			if got := mustJSON(t, o); !sameJSON(t, got, []byte(tc.want)) {
				t.Errorf("%s: outcome %s, want %s", tc.key, got, tc.want)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON reports whether a and b hold the same JSON value, numbers
// compared as written.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	for _, x := range []struct {
		b []byte
		v *any
	}{{a, &va}, {b, &vb}} {
		d := json.NewDecoder(strings.NewReader(string(x.b)))
		d.UseNumber()
		if err := d.Decode(x.v); err != nil {
			t.Fatalf("%s: %v", x.b, err)
		}
	}
	return reflect.DeepEqual(va, vb)
}
