package postgres

import (
	"context"
	"strings"
	"testing"
)

// Migration 0014 rewrites the API key secrets that responses stored before
// it hold into the form a replay now has, and leaves other bodies alone.
func TestMigration_StoredResponsesLoseTheirSecrets(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
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
