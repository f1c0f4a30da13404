package holdfast_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
)

// Well-formed ids that name nothing in particular.
const (
	idA = "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2b"
	idB = "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2c"
	idC = "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2d"
)

// mustValidate fails t unless err is nil (want "") or EINVALID with a message
// that starts with want, so each case proves which rule refused the input.
func mustValidate(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "":
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case !holdfast.IsCode(err, holdfast.EINVALID):
		t.Fatalf("got %v, want %s", err, holdfast.EINVALID)
	case !strings.HasPrefix(holdfast.ErrorMessage(err), want):
		t.Fatalf("message %q, want it to start with %q", holdfast.ErrorMessage(err), want)
	}
}

// textCase is one input to a validator of a string, and what mustValidate wants of it.
type textCase struct{ name, in, want string }

// runTextCases runs validate on each case in a parallel subtest.
func runTextCases(t *testing.T, validate func(string) error, cases []textCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mustValidate(t, validate(tc.in), tc.want)
		})
	}
}

func TestValidCurrency(t *testing.T) {
	t.Parallel()
	const bad = "currency must be"
	runTextCases(t, holdfast.ValidCurrency, []textCase{
		{"USD", "USD", ""},
		{"EUR", "EUR", ""},
		{"empty", "", bad},
		{"two letters", "US", bad},
		{"four letters", "USDT", bad},
		{"lower case", "usd", bad},
		{"mixed case", "Usd", bad},
		{"symbol", "U$D", bad},
		{"digits", "12A", bad},
		{"three bytes of UTF-8", "ÜS", bad},
	})
}

func TestValidID(t *testing.T) {
	t.Parallel()
	const bad = "account_id must be a UUID"
	validID := func(s string) error { return holdfast.ValidID("account_id", s) }
	runTextCases(t, validID, []textCase{
		{"lower case", idA, ""},
		{"upper case", strings.ToUpper(idA), ""},
		{"mixed case", "0190A0B0-c0d0-7E0F-8a0b-0C0D0E0F1A2B", ""},
		{"empty", "", bad},
		{"35 chars", idA[:35], bad},
		{"37 chars", idA + "0", bad},
		{"no hyphens", strings.ReplaceAll(idA, "-", ""), bad},
		{"hex for a hyphen", "0190a0b0ac0d0-7e0f-8a0b-0c0d0e0f1a2b", bad},
		{"hyphen moved left", "0190a0b-0c0d0-7e0f-8a0b-0c0d0e0f1a2b", bad},
		{"hyphen moved right", "0190a0b0-c0d07-e0f-8a0b-0c0d0e0f1a2b", bad},
		{"non-hex letter", "g190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2b", bad},
		{"non-hex last", "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2z", bad},
		{"space", "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2 ", bad},
		{"multi-byte", "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1aé", bad},
		{"braces", "{" + idA + "}", bad},
		{"urn", "urn:uuid:" + idA, bad},
	})
}

func TestCanonicalID(t *testing.T) {
	t.Parallel()
	if got := holdfast.CanonicalID(strings.ToUpper(idA)); got != idA {
		t.Errorf("CanonicalID(upper) = %q, want %q", got, idA)
	}
	if got := holdfast.CanonicalID(idA); got != idA {
		t.Errorf("CanonicalID(lower) = %q, want it unchanged", got)
	}
}

func TestValidIdempotencyKey(t *testing.T) {
	t.Parallel()
	var printable strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		printable.WriteByte(c)
	}
	const bad = "Idempotency-Key must be"
	runTextCases(t, holdfast.ValidIdempotencyKey, []textCase{
		{"one char", "a", ""},
		{"space", " ", ""},
		{"every printable", printable.String(), ""},
		{"255 chars", strings.Repeat("k", 255), ""},
		{"empty", "", bad},
		{"256 chars", strings.Repeat("k", 256), bad},
		{"tab", "a\tb", bad},
		{"newline", "a\nb", bad},
		{"NUL", "a\x00", bad},
		{"DEL", "a\x7f", bad},
		{"0x80", "a\x80", bad},
		{"UTF-8", "café", bad},
	})
}

func TestPageNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		in        holdfast.Page
		wantLimit int
		want      string
	}{
		{"zero defaults", holdfast.Page{}, holdfast.DefaultPageLimit, ""},
		{"one", holdfast.Page{Limit: 1}, 1, ""},
		{"max", holdfast.Page{Limit: holdfast.MaxPageLimit}, holdfast.MaxPageLimit, ""},
		{"cursor 200 bytes", holdfast.Page{Limit: 10, Cursor: strings.Repeat("c", 200)}, 10, ""},
		{"negative", holdfast.Page{Limit: -1}, 0, "limit must be between"},
		{"over max", holdfast.Page{Limit: holdfast.MaxPageLimit + 1}, 0, "limit must be between"},
		{"cursor 201 bytes", holdfast.Page{Cursor: strings.Repeat("c", 201)}, 0, "cursor is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.in.Normalize()
			mustValidate(t, err, tc.want)
			if err != nil {
				return
			}
			if got.Limit != tc.wantLimit || got.Cursor != tc.in.Cursor {
				t.Errorf("Normalize() = %+v, want limit %d and the cursor kept", got, tc.wantLimit)
			}
		})
	}
}

// validTransfer returns a transfer that passes Validate.
func validTransfer() holdfast.TransferCreate {
	return holdfast.TransferCreate{DebitAccountID: idA, CreditAccountID: idB, Amount: 1250, Currency: "USD"}
}

func TestTransferCreateValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*holdfast.TransferCreate)
		want   string
	}{
		{"valid", func(*holdfast.TransferCreate) {}, ""},
		{"client id", func(c *holdfast.TransferCreate) { c.ID = idC }, ""},
		{"upper-case ids", func(c *holdfast.TransferCreate) {
			c.DebitAccountID, c.CreditAccountID = strings.ToUpper(idA), strings.ToUpper(idB)
		}, ""},
		{"amount 1", func(c *holdfast.TransferCreate) { c.Amount = 1 }, ""},
		{"amount max", func(c *holdfast.TransferCreate) { c.Amount = holdfast.MaxAmount }, ""},
		{"description 500 bytes", func(c *holdfast.TransferCreate) { c.Description = strings.Repeat("d", 500) }, ""},
		{"description 500 bytes of UTF-8", func(c *holdfast.TransferCreate) { c.Description = strings.Repeat("é", 250) }, ""},
		{"description tab and newline", func(c *holdfast.TransferCreate) { c.Description = "rent\tMay\nflat 2" }, ""},

		{"client id not a UUID", func(c *holdfast.TransferCreate) { c.ID = "order-1" }, "id must be a UUID"},
		{"debit missing", func(c *holdfast.TransferCreate) { c.DebitAccountID = "" }, "debit_account_id must be a UUID"},
		{"debit malformed", func(c *holdfast.TransferCreate) { c.DebitAccountID = idA[:35] }, "debit_account_id must be a UUID"},
		{"credit malformed", func(c *holdfast.TransferCreate) { c.CreditAccountID = idB + "0" }, "credit_account_id must be a UUID"},
		{"debit is credit", func(c *holdfast.TransferCreate) { c.CreditAccountID = idA }, "debit_account_id and credit_account_id must differ"},
		{"debit is credit in other case", func(c *holdfast.TransferCreate) { c.CreditAccountID = strings.ToUpper(idA) }, "debit_account_id and credit_account_id must differ"},
		{"amount zero", func(c *holdfast.TransferCreate) { c.Amount = 0 }, "amount must be a positive"},
		{"amount negative", func(c *holdfast.TransferCreate) { c.Amount = -1 }, "amount must be a positive"},
		{"amount over max", func(c *holdfast.TransferCreate) { c.Amount = holdfast.MaxAmount + 1 }, "amount must be at most"},
		{"currency lower case", func(c *holdfast.TransferCreate) { c.Currency = "usd" }, "currency must be"},
		{"currency missing", func(c *holdfast.TransferCreate) { c.Currency = "" }, "currency must be"},
		{"description 501 bytes", func(c *holdfast.TransferCreate) { c.Description = strings.Repeat("d", 501) }, "description must be at most"},
		{"description invalid UTF-8", func(c *holdfast.TransferCreate) { c.Description = "caf\xe9" }, "description is not valid UTF-8"},
		{"description NUL", func(c *holdfast.TransferCreate) { c.Description = "a\x00b" }, "description contains a control character"},
		{"description carriage return", func(c *holdfast.TransferCreate) { c.Description = "a\r\nb" }, "description contains a control character"},
		{"description escape", func(c *holdfast.TransferCreate) { c.Description = "\x1b[31mred" }, "description contains a control character"},
		{"description DEL", func(c *holdfast.TransferCreate) { c.Description = "a\x7f" }, "description contains a control character"},
		{"description C1 control", func(c *holdfast.TransferCreate) { c.Description = "a\u0085b" }, "description contains a control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := validTransfer()
			tc.change(&in)
			mustValidate(t, in.Validate(), tc.want)
		})
	}
}

func TestTransferCreateMatches(t *testing.T) {
	t.Parallel()
	existing := &holdfast.Transfer{
		ID: idC, DebitAccountID: idA, CreditAccountID: idB,
		Amount: 1250, Currency: "USD", Description: "rent",
	}
	for _, tc := range []struct {
		name   string
		change func(*holdfast.TransferCreate)
		want   bool
	}{
		{"same fields", func(*holdfast.TransferCreate) {}, true},
		{"ids in upper case", func(c *holdfast.TransferCreate) {
			c.DebitAccountID, c.CreditAccountID = strings.ToUpper(idA), strings.ToUpper(idB)
		}, true},
		{"other debit", func(c *holdfast.TransferCreate) { c.DebitAccountID = idC }, false},
		{"other credit", func(c *holdfast.TransferCreate) { c.CreditAccountID = idC }, false},
		{"swapped accounts", func(c *holdfast.TransferCreate) { c.DebitAccountID, c.CreditAccountID = idB, idA }, false},
		{"other amount", func(c *holdfast.TransferCreate) { c.Amount++ }, false},
		{"other currency", func(c *holdfast.TransferCreate) { c.Currency = "EUR" }, false},
		{"other description", func(c *holdfast.TransferCreate) { c.Description = "Rent" }, false},
		{"no description", func(c *holdfast.TransferCreate) { c.Description = "" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := validTransfer()
			in.ID, in.Description = existing.ID, existing.Description
			tc.change(&in)
			if got := in.Matches(existing); got != tc.want {
				t.Errorf("Matches() = %v, want %v", got, tc.want)
			}
		})
	}
}

// metadata returns n distinct keys, each with a short value.
func metadata(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("key%d", i)] = "value"
	}
	return m
}

func TestAccountCreateValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		currency string
		metadata map[string]string
		want     string
	}{
		{"no metadata", "USD", nil, ""},
		{"empty metadata", "USD", map[string]string{}, ""},
		{"max keys", "USD", metadata(holdfast.MaxMetadataKeys), ""},
		{"longest key", "USD", map[string]string{strings.Repeat("k", holdfast.MaxMetadataKey): "v"}, ""},
		{"empty value", "USD", map[string]string{"k": ""}, ""},
		{"longest value", "USD", map[string]string{"k": strings.Repeat("v", holdfast.MaxMetadataValue)}, ""},
		{"value with tab and newline", "USD", map[string]string{"note": "line 1\n\tline 2"}, ""},

		{"bad currency", "dollars", nil, "currency must be"},
		{"too many keys", "USD", metadata(holdfast.MaxMetadataKeys + 1), "metadata has more than"},
		{"empty key", "USD", map[string]string{"": "v"}, "metadata key is required"},
		{"key too long", "USD", map[string]string{strings.Repeat("k", holdfast.MaxMetadataKey+1): "v"}, "metadata key must be at most"},
		{"key control character", "USD", map[string]string{"a\x00": "v"}, "metadata key contains a control character"},
		{"key invalid UTF-8", "USD", map[string]string{"\xff": "v"}, "metadata key is not valid UTF-8"},
		{"value too long", "USD", map[string]string{"k": strings.Repeat("v", holdfast.MaxMetadataValue+1)}, "metadata value must be at most"},
		{"value control character", "USD", map[string]string{"k": "\x1b[2J"}, "metadata value contains a control character"},
		{"value invalid UTF-8", "USD", map[string]string{"k": "caf\xe9"}, "metadata value is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := holdfast.AccountCreate{Currency: tc.currency, Metadata: tc.metadata}
			mustValidate(t, in.Validate(), tc.want)
		})
	}
}

func TestAccountCreateMetadataJSON(t *testing.T) {
	t.Parallel()
	for _, m := range []map[string]string{nil, {}} {
		if got := string(holdfast.AccountCreate{Metadata: m}.MetadataJSON()); got != "{}" {
			t.Errorf("MetadataJSON(%#v) = %s, want {}", m, got)
		}
	}
	want := map[string]string{"customer": "c-42", "note": "“quoted”\n<b>&"}
	var got map[string]string
	if err := json.Unmarshal(holdfast.AccountCreate{Metadata: want}.MetadataJSON(), &got); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("MetadataJSON round trip = %v, want %v", got, want)
	}
}

func TestTenantCreateValidate(t *testing.T) {
	t.Parallel()
	validName := func(s string) error { return holdfast.TenantCreate{Name: s}.Validate() }
	runTextCases(t, validName, []textCase{
		{"plain", "Acme Ltd", ""},
		{"UTF-8", "Müller & Söhne", ""},
		{"200 bytes", strings.Repeat("n", 200), ""},
		{"empty", "", "name is required"},
		{"201 bytes", strings.Repeat("n", 201), "name must be at most"},
		{"invalid UTF-8", "\xff", "name is not valid UTF-8"},
		{"control character", "Acme\x00", "name contains a control character"},
	})
}
