package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStateRedis checks state.redis: absent means no shared state, and every problem names
// its line and the fix.
func TestStateRedis(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{name: "no state section is valid", yaml: ""},
		{name: "an address alone is valid", yaml: "state:\n  redis:\n    address: redis.internal:6379\n"},
		{
			name: "every key set is valid",
			yaml: "state:\n  redis:\n    address: 10.0.0.5:6380\n    username: apisessions\n    password_file: /run/secrets/redis\n    db: 2\n    key_prefix: \"prod:\"\n    timeout: 50ms\n    pool_size: 16\n    tls:\n      ca_file: ca.pem\n      server_name: redis.internal\n",
		},
		{
			name: "a section without address",
			yaml: "state:\n  redis:\n    db: 1\n",
			want: []string{f + `:2: state.redis.address: is empty; set the Redis server's host:port, e.g. "redis.internal:6379", or remove the state section to keep state in this process`},
		},
		{
			name: "an address without port",
			yaml: "state:\n  redis:\n    address: redis.internal\n",
			want: []string{f + `:3: state.redis.address: "redis.internal" is not a host:port address; write e.g. "redis.internal:6379" or "127.0.0.1:6379"`},
		},
		{
			name: "an address from the environment is not echoed",
			yaml: "state:\n  redis:\n    address: ${ADDR}\n",
			env:  map[string]string{"ADDR": ":0"},
			want: []string{f + `:3: state.redis.address: the value from the environment is not a host:port address; write e.g. "redis.internal:6379" or "127.0.0.1:6379"`},
		},
		{
			name: "a port out of range",
			yaml: "state:\n  redis:\n    address: r:70000\n",
			want: []string{f + `:3: state.redis.address: "r:70000" has no valid port; use a number from 1 to 65535, e.g. "redis.internal:6379"`},
		},
		{
			name: "both password sources",
			yaml: "state:\n  redis:\n    address: r:6379\n    password_file: p\n    password_env: P\n",
			want: []string{f + `:5: state.redis.password_env: is set together with password_file; keep one of them`},
		},
		{
			name: "a password variable that is no variable name",
			yaml: "state:\n  redis:\n    address: r:6379\n    password_env: REDIS-PW\n",
			want: []string{f + `:4: state.redis.password_env: "REDIS-PW" is not an environment variable name; use letters, digits and _, e.g. REDIS_PASSWORD`},
		},
		{
			name: "bounds",
			yaml: "state:\n  redis:\n    address: r:6379\n    db: -1\n    key_prefix: \"a b\"\n    timeout: 2s\n    pool_size: 0\n    tls:\n      cert_file: c.pem\n",
			want: []string{
				f + `:4: state.redis.db: -1 is negative; use a database number from 0, the default`,
				f + `:5: state.redis.key_prefix: "a b" is not a key prefix; use 1 to 64 visible ASCII characters, e.g. "apisessions:"`,
				f + `:6: state.redis.timeout: 2s is out of range; use more than 0 and at most 1s (requests wait for it), the default is 20ms`,
				f + `:7: state.redis.pool_size: 0 is out of range; use 1 to 10000 connections, the default is 64`,
				f + `:8: state.redis.tls.key_file: is empty while cert_file is set; set both or neither`,
			},
		},
		{
			name: "a mistyped key suggests the right one",
			yaml: "state:\n  redis:\n    adress: r:6379\n",
			want: []string{
				f + `:2: state.redis.address: is empty; set the Redis server's host:port, e.g. "redis.internal:6379", or remove the state section to keep state in this process`,
				f + `:3: state.redis: unknown key "adress" (did you mean "address"?)`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseAndValidate(f, []byte(tc.yaml), envMap(tc.env), testSinkTypes)
			if diff := cmp.Diff(tc.want, problemLines(t, err)); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
		})
	}
}

func TestStateRedisDefaults(t *testing.T) {
	t.Parallel()
	r := Default().State.Redis
	if r.Enabled() || r.KeyPrefix != "apisessions:" || r.Timeout.Std() != 20*time.Millisecond || r.PoolSize != 64 {
		t.Errorf("default state.redis = %+v; want disabled, prefix apisessions:, 20ms, 64 connections", r)
	}
}
