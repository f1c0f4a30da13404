// Package redistest gives a test a Redis client and a key prefix of its
// own, or skips it: Redis is optional for Holdfast (it shares the rate limit
// across replicas), and the rest of the suite needs none.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client returns a client of the Redis at REDIS_URL (default
// redis://127.0.0.1:6379/0), closed when t ends; it skips t when that Redis
// does not answer.
func Client(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Skipf("no Redis at %s (%v): the Redis-backed rate limit is not tested; set REDIS_URL or start redis-server", url, err)
	}
	return c
}

// Prefix returns a key prefix no other test uses.
func Prefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "holdfast-test:" + hex.EncodeToString(b[:]) + ":"
}
