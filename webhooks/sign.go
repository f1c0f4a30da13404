package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Signer signs messages with an endpoint's secrets: its current one and,
// during a rotation's overlap, its previous one.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a signer for the secrets (each "whsec_" and base64);
// an error names a malformed one without showing it.
func NewSigner(secrets ...string) (*Signer, error) {
	s := &Signer{}
	for i, secret := range secrets {
		key, err := DecodeSecret(secret)
		if err != nil {
			return nil, fmt.Errorf("webhooks: secret %d: %w", i, err)
		}
		s.keys = append(s.keys, key)
	}
	if len(s.keys) == 0 {
		return nil, fmt.Errorf("webhooks: no secret to sign with")
	}
	return s, nil
}

// DecodeSecret returns the key of a secret: the base64 after the prefix
// (which may be absent, as the spec's libraries accept).
func DecodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, holdfast.WebhookSecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("not a base64 signing secret")
	}
	return key, nil
}

// Sign returns the webhook-signature header of a message: "v1,<base64
// HMAC-SHA256 of id.timestamp.body>" per secret, space-separated.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	var b strings.Builder
	for i, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(unix))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String()
}
