package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhooks"
)

// verify is a receiver's check written from the Standard Webhooks spec,
// independently of Signer: the key is the base64 after "whsec_", the
// signed content "id.timestamp.body", each space-separated "v1,<base64>"
// a candidate.
func verify(secret, id, timestamp string, body []byte, header string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Split(header, " ") {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// The test vector the spec's libraries publish (libraries/go/webhook_test.go
// TestWebhookSign, libraries/python/tests/test_webhooks.py).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSigner_SpecTestVector(t *testing.T) {
	s, err := webhooks.NewSigner(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Fatalf("signature %q, the spec's vector is %q", got, vectorSignature)
	}
	if !verify(vectorSecret, vectorID, strconv.Itoa(vectorTimestamp), []byte(vectorBody), vectorSignature) {
		t.Fatal("the independent check refuses the spec's own vector")
	}
}

func TestSigner_RotationSignsWithBoth(t *testing.T) {
	old, cur := holdfast.NewWebhookSecret(), holdfast.NewWebhookSecret()
	s, err := webhooks.NewSigner(cur, old)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"id":"e1"}`)
	header := s.Sign("e1", ts, body)
	if n := len(strings.Fields(header)); n != 2 {
		t.Fatalf("%d signatures during the overlap, want 2: %q", n, header)
	}
	for _, secret := range []string{old, cur} {
		if !verify(secret, "e1", "1700000000", body, header) {
			t.Errorf("a receiver holding one of the secrets cannot verify %q", header)
		}
	}
	if verify(holdfast.NewWebhookSecret(), "e1", "1700000000", body, header) {
		t.Error("a third secret verifies")
	}
	if verify(cur, "e1", "1700000000", []byte(`{"id":"e2"}`), header) {
		t.Error("another body verifies")
	}
}

func TestNewSigner_RefusesMalformedSecrets(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := webhooks.NewSigner(s); err == nil {
			t.Errorf("NewSigner(%q) accepted", s)
		}
	}
}
