package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTestRedis is the Redis tests use when APISESSIONS_TEST_REDIS is not set.
const DefaultTestRedis = "127.0.0.1:6379"

// RedisPrefix returns the address of the test Redis (APISESSIONS_TEST_REDIS, else
// DefaultTestRedis) and a key prefix of the test's own; every key under it is deleted when
// the test ends. Without a Redis the test is skipped, except with CI=true, where it fails:
// CI must run these tests.
func RedisPrefix(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = os.Getenv("APISESSIONS_TEST_REDIS")
	if addr == "" {
		addr = DefaultTestRedis
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Redis at %s (APISESSIONS_TEST_REDIS): %v; CI runs the Redis tests, start one", addr, err)
		}
		t.Skipf("no Redis at %s (set APISESSIONS_TEST_REDIS or start redis-server): %v", addr, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix = "apisessions_t_" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("delete the test's Redis keys under %s: %v", prefix, err)
		}
	})
	return addr, prefix
}
