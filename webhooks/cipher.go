package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Cipher seals endpoint secrets at rest with AES-256-GCM under the key from
// configuration; each sealed secret is bound to its endpoint (the additional
// data), so a sealed value copied to another row does not open.
type Cipher struct {
	aead cipher.AEAD
}

// KeySize is the length of the key, in bytes.
const KeySize = 32

// ParseKey reads a key written as 64 hex digits or as base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("a webhook secret key is %d bytes in hex (64 digits) or base64 (generate one with 'openssl rand -hex 32')", KeySize)
}

// NewKey returns a random key in hex, as ParseKey reads it.
func NewKey() string {
	b := make([]byte, KeySize)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewCipher returns a Cipher with the key (KeySize bytes).
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("webhooks: the secret key must be %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead}, nil
}

// Seal returns the nonce and the sealed plaintext, bound to context.
func (c *Cipher) Seal(plaintext []byte, context string) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return c.aead.Seal(nonce, nonce, plaintext, []byte(context)), nil
}

// ErrUnsealable is returned for a sealed value that does not open: another
// key, another context, or altered bytes.
var ErrUnsealable = errors.New("webhooks: a sealed secret does not open with the configured key")

// Open returns the plaintext of a value Seal returned with the same context.
func (c *Cipher) Open(sealed []byte, context string) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrUnsealable
	}
	out, err := c.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
	if err != nil {
		return nil, ErrUnsealable
	}
	return out, nil
}
