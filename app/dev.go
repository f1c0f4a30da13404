package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/webhooks"
)

// Files of dev in the data directory.
const (
	// devStateFile keeps the demo tenant's API key and the admin token in
	// plaintext (mode 0600) so that every start prints the same ones. That
	// is for a development server only: the database keeps only the key's
	// hash, and serve keeps nothing of the kind.
	devStateFile = "dev.json"
	// devLockFile is locked while a dev runs on the data directory.
	devLockFile = "dev.lock"
)

// devState is what dev keeps between starts in devStateFile.
type devState struct {
	TenantID   string `json:"tenant_id"`
	APIKey     string `json:"api_key"`
	AdminToken string `json:"admin_token"`
	House      string `json:"house_account_id"`    // USD, overdraft allowed: transfers from it always go through
	Customer   string `json:"customer_account_id"` // USD, no overdraft
	// WebhookKey seals the dev database's webhook secrets: kept beside it.
	WebhookKey string `json:"webhook_secret_key"`
}

// demoIdempotencyKey is the banner's transfer's key: the same on every
// start, so pasting the transfer again replays it.
const demoIdempotencyKey = "demo-transfer-1"

// lockDataDir makes sure no other dev runs on dir, and holds its lock
// until the returned file is closed (or the process ends).
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, devLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(f)
		f.Close()
		who := "another holdfast dev"
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			who += " (pid " + strconv.Itoa(pid) + ")"
		}
		return nil, fmt.Errorf("%s is running on the data directory %s: stop it (Ctrl-C), or give this one its own --data-dir and --addr", who, dir)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// resetDataDir deletes what dev keeps in dir: the private PostgreSQL, the
// embedded NATS's files, the receipt images and the demo credentials. It
// runs with dir locked, and leaves anything else in dir alone.
func resetDataDir(dir string) error {
	for _, name := range []string{"postgres", "nats", "blobs", devStateFile} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("--reset: %w", err)
		}
	}
	return nil
}

// openDev loads the demo tenant, its key and accounts from the data
// directory, or creates them (and the admin token) on a first start or
// when the database no longer has them. The admin token of --admin-token
// wins over the kept one.
func (m *Main) openDev(ctx context.Context) error {
	path := filepath.Join(m.Config.DataDir, devStateFile)
	var st devState
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("dev: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("dev: %s: %w (delete it, or start with --reset)", path, err)
		}
	}
	tenants, accounts := postgres.NewTenantService(m.DB), postgres.NewAccountService(m.DB)
	changed := false
	if ok, err := m.devTenantExists(ctx, st); err != nil {
		return err
	} else if !ok {
		t, k, err := tenants.CreateTenant(ctx, holdfast.TenantCreate{Name: "demo"}, nil)
		if err != nil {
			return fmt.Errorf("demo tenant: %w", err)
		}
		house, err := accounts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD", AllowOverdraft: true, Metadata: map[string]string{"name": "house"}}, nil)
		if err != nil {
			return fmt.Errorf("demo account: %w", err)
		}
		customer, err := accounts.CreateAccount(ctx, t.ID, holdfast.AccountCreate{Currency: "USD", Metadata: map[string]string{"name": "customer"}}, nil)
		if err != nil {
			return fmt.Errorf("demo account: %w", err)
		}
		st.TenantID, st.APIKey, st.House, st.Customer = t.ID, k.Secret, house.ID, customer.ID
		changed = true
	}
	if st.AdminToken == "" {
		var b [16]byte
		rand.Read(b[:])
		st.AdminToken = "hfadmin_" + hex.EncodeToString(b[:])
		changed = true
	}
	if st.WebhookKey == "" {
		st.WebhookKey = webhooks.NewKey()
		changed = true
	}
	if changed {
		if err := writeDevState(path, st); err != nil {
			return err
		}
	}
	if m.Config.AdminToken == "" {
		m.Config.AdminToken = st.AdminToken
	}
	if m.Config.Webhooks.SecretKey == "" {
		m.Config.Webhooks.SecretKey = st.WebhookKey
	}
	m.dev = &st
	return nil
}

// devTenantExists reports whether the database still has the kept demo
// tenant, its key and its two accounts (not after --reset of the
// database alone, or with another DATABASE_URL).
func (m *Main) devTenantExists(ctx context.Context, st devState) (bool, error) {
	if st.TenantID == "" || st.APIKey == "" || st.House == "" || st.Customer == "" {
		return false, nil
	}
	id, err := postgres.NewTenantService(m.DB).Authenticate(ctx, st.APIKey)
	if holdfast.ErrorCode(err) == holdfast.EUNAUTHORIZED || err == nil && id != st.TenantID {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("demo tenant: %w", err)
	}
	accounts := postgres.NewAccountService(m.DB)
	for _, a := range []string{st.House, st.Customer} {
		if _, err := accounts.FindAccount(ctx, st.TenantID, a); holdfast.ErrorCode(err) == holdfast.ENOTFOUND {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("demo account: %w", err)
		}
	}
	return true, nil
}

// writeDevState replaces path with st, readable by its owner only.
func writeDevState(path string, st devState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}

// printDevBanner shows the demo credentials and commands to paste: the
// same lines on every start (but for the ports of :0).
func (m *Main) printDevBanner(dbURL string) {
	st, u := m.dev, m.HTTP.URL()
	transfer := fmt.Sprintf(`-X POST %s/v1/transfers -H "Authorization: Bearer $KEY" \
       -H 'Idempotency-Key: %s' -H 'Content-Type: application/json' \
       -d '{"debit_account_id":"%s","credit_account_id":"%s","amount":500,"currency":"USD"}'`,
		u, demoIdempotencyKey, st.House, st.Customer)
	w := m.Stdout
	fmt.Fprintf(w, `
Holdfast is running at %[1]s  (Ctrl-C to stop)
  console:      %[1]s/console  (log in with the admin token)

  demo tenant:  %[2]s
  API key:      %[3]s
  admin token:  %[4]s
  accounts:     %[5]s (USD, overdraft allowed: the house)
                %[6]s (USD: a customer)
  These are kept in %[7]s (mode 0600, dev only) and are the same on every start;
  '%[9]s dev --reset' or 'make clean' starts over.

Try it (paste these lines):
  export KEY=%[3]s
  curl -s %[1]s/v1/accounts -H "Authorization: Bearer $KEY"
  # $5.00 from the house to the customer; the Idempotency-Key makes a retry safe
  curl -s %[8]s
  # the same request again: the first answer replayed, Idempotent-Replayed: true, no second transfer
  curl -si %[8]s
  # the customer's entries as CSV
  curl -s %[1]s/v1/accounts/%[6]s/transactions.csv -H "Authorization: Bearer $KEY"

  # webhooks: every transfer.posted to an endpoint of yours (dev allows localhost); keep the secret it answers
  curl -s -X POST %[1]s/v1/webhook-endpoints -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
       -d '{"url":"http://127.0.0.1:9000/hooks","event_types":["transfer.posted"]}'

More: curl -s %[1]s/openapi.json | head; curl -s %[1]s/metrics | grep holdfast_

`, u, st.TenantID, st.APIKey, m.Config.AdminToken, st.House, st.Customer, filepath.Join(m.Config.DataDir, devStateFile), transfer, program())
	if m.Cluster != nil {
		fmt.Fprintf(w, `PostgreSQL (private, in %[1]s):
  psql '%[2]s'
  export DATABASE_URL='%[2]s'
  %[3]s seed --entries 100000   # a long history to export; seed reads DATABASE_URL

`, filepath.Join(m.Config.DataDir, "postgres"), dbURL, labProgram())
	} else {
		fmt.Fprintf(w, "PostgreSQL: %s (DATABASE_URL)\n\n", redacted(dbURL))
	}
	if nu := m.NATS.ClientURL(); nu != "" {
		fmt.Fprintf(w, "NATS (embedded, JetStream):\n  nats --server %s stream info events\n\n", nu)
	}
}

// program is how to run this binary again from the shell it was started
// from: its path as typed, or `go run` for a binary that go run built.
func program() string {
	p := os.Args[0]
	switch {
	case strings.Contains(p, "go-build"):
		return "go run ./cmd/holdfast"
	case strings.Contains(p, "/"):
		return p
	}
	return "holdfast"
}

// labProgram is how to run holdfast-lab, the measurement binary built
// beside this one (make build puts both in bin/), from the same shell.
func labProgram() string {
	if p := program(); p != "go run ./cmd/holdfast" {
		return p + "-lab"
	}
	return "go run ./cmd/holdfast-lab"
}

// redacted returns a database URL without its password.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(set)"
}
