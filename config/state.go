package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// State is the live state replicas share (several apisessions behind one Envoy). Without
// state.redis.address each replica keeps its state in its own memory.
type State struct {
	Redis Redis `yaml:"redis"`
}

// Redis is the Redis server that holds the shared live state.
type Redis struct {
	// Address is host:port; empty means no shared state.
	Address  string `yaml:"address"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (read at start; chmod 600). PasswordEnv names an
	// environment variable that holds it instead. At most one of them is set.
	PasswordFile string    `yaml:"password_file"`
	PasswordEnv  string    `yaml:"password_env"`
	TLS          ClientTLS `yaml:"tls"`
	DB           int       `yaml:"db"`
	// KeyPrefix starts every key apisessions writes, so that one Redis can serve several
	// deployments.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one round trip (all of a request's reads and writes, pipelined); past it
	// the request is decided locally.
	Timeout Duration `yaml:"timeout"`
	// PoolSize bounds the connections to Redis. Concurrent round trips share one pipeline,
	// so the client keeps two busy at most (the round in flight and the probe).
	PoolSize int `yaml:"pool_size"`
}

// Enabled reports whether a Redis server is configured.
func (r *Redis) Enabled() bool { return r.Address != "" }

// Defaults and limits of state.redis.
const (
	DefaultRedisKeyPrefix = "apisessions:"
	// DefaultRedisTimeout is some 50 times a round trip within a data centre (0.2-0.5 ms), so
	// that a slow moment of Redis or the network is waited out, and short enough that an
	// unreachable Redis adds no more than this to an inline answer before the circuit opens.
	DefaultRedisTimeout = Duration(20 * time.Millisecond)
	// MaxRedisTimeout keeps a slow Redis from holding Envoy's requests for long.
	MaxRedisTimeout = Duration(time.Second)
	// DefaultRedisPoolSize leaves room above the two connections the client uses; a smaller
	// value (at least 1) bounds them further.
	DefaultRedisPoolSize = 64
	maxRedisPoolSize     = 10000
	maxRedisKeyPrefix    = 64
)

// state checks state.redis. Files are not opened (see Validate).
func (v *validator) state() {
	r := &v.c.State.Redis
	if !r.Enabled() {
		if v.c.written("state.redis") || v.c.written("state") {
			v.add("state.redis.address", "is empty; set the Redis server's host:port, e.g. \"redis.internal:6379\", or remove the state section to keep state in this process")
		}
		return
	}
	v.redisAddress(r.Address)
	switch {
	case r.PasswordFile != "" && r.PasswordEnv != "":
		v.add("state.redis.password_env", "is set together with password_file; keep one of them")
	case r.PasswordEnv != "" && !validEnvName(r.PasswordEnv):
		v.add("state.redis.password_env", "%s is not an environment variable name; use letters, digits and _, e.g. REDIS_PASSWORD", v.show("state.redis.password_env", r.PasswordEnv))
	}
	if r.DB < 0 {
		v.add("state.redis.db", "%d is negative; use a database number from 0, the default", r.DB)
	}
	if r.KeyPrefix == "" || len(r.KeyPrefix) > maxRedisKeyPrefix || strings.ContainsFunc(r.KeyPrefix, func(c rune) bool { return c <= ' ' || c > '~' }) {
		v.add("state.redis.key_prefix", "%s is not a key prefix; use 1 to %d visible ASCII characters, e.g. %q", v.show("state.redis.key_prefix", r.KeyPrefix), maxRedisKeyPrefix, DefaultRedisKeyPrefix)
	}
	if r.Timeout <= 0 || r.Timeout > MaxRedisTimeout {
		v.add("state.redis.timeout", "%s is out of range; use more than 0 and at most %s (requests wait for it), the default is %s", time.Duration(r.Timeout), time.Duration(MaxRedisTimeout), time.Duration(DefaultRedisTimeout))
	}
	if r.PoolSize < 1 || r.PoolSize > maxRedisPoolSize {
		v.add("state.redis.pool_size", "%d is out of range; use 1 to %d connections, the default is %d", r.PoolSize, maxRedisPoolSize, DefaultRedisPoolSize)
	}
	r.TLS.check("state.redis.tls", v.add)
}

// redisAddress checks state.redis.address: a host and a port, both required.
func (v *validator) redisAddress(addr string) {
	const key = "state.redis.address"
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	switch {
	case err != nil || host == "":
		v.add(key, "%s is not a host:port address; write e.g. \"redis.internal:6379\" or \"127.0.0.1:6379\"", v.show(key, addr))
	case perr != nil || n < 1 || n > 65535:
		v.add(key, "%s has no valid port; use a number from 1 to 65535, e.g. \"redis.internal:6379\"", v.show(key, addr))
	}
}
