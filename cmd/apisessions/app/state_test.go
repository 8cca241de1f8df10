package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/internal/testutil"
)

// TestServeWithSharedState starts the server with state.redis: reachable, parts are numbered
// in Redis (a round trip per stream, the state up); unreachable, the server still starts,
// says so, and numbers parts locally (the state down, the requests counted as skipped).
func TestServeWithSharedState(t *testing.T) {
	t.Parallel()
	addr, prefix := testutil.RedisPrefix(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, addr string
		want       []string
	}{
		// The part workers send the two requests' links and parts in one round trip each, or
		// two each.
		{name: "reachable", addr: addr, want: []string{"apisessions_state_up 1", `apisessions_state_round_trip_seconds_count{op="observe"} [1-4]\n`, `apisessions_state_errors_total{op="observe"} 0`, `apisessions_sessions_shared_queued 0`}},
		{name: "unreachable", addr: closed, want: []string{"apisessions_state_up 0", `apisessions_state_skipped_total{op="observe"} [1-4]\n`, `apisessions_sessions_shared_queued 0`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fmt.Sprintf("state:\n  redis:\n    address: %q\n    key_prefix: %q\n    timeout: 500ms\nsinks:\n  - type: jsonl\n    path: /dev/null\n", tc.addr, prefix+tc.name+":")
			r := startServe(t, "--config", writeConfig(t, cfg))
			if tc.name == "unreachable" && !strings.Contains(r.stderr.String(), "Redis unreachable at start") {
				t.Errorf("the log does not say Redis is unreachable:\n%s", r.stderr.String())
			}
			client := dialPlain(t, r.grpcAddr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, x := range secretExchanges()[:2] {
				if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(x, protomsg.Options{Mode: bufferedMode})); err != nil {
					t.Fatalf("%s: %v", x.RequestID, err)
				}
			}
			// The parts are numbered after the streams end, by the part workers: wait for them.
			var missing []string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				page := scrape(t, r.httpAddr)
				missing = missing[:0]
				for _, re := range tc.want {
					if !regexp.MustCompile(re).MatchString(page) {
						missing = append(missing, re)
					}
				}
				if len(missing) == 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, re := range missing {
				t.Errorf("/metrics has no line matching %q", re)
			}
		})
	}
}

// TestRedisPassword reads the password from a private file or a set variable, and refuses a
// file others may read or a variable that is not set, naming the key.
func TestRedisPassword(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(private, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod, as the server's tests set a umask that keeps new files private.
	if err := os.WriteFile(open, []byte("s3cret\n"), 0o600); err != nil || os.Chmod(open, 0o644) != nil {
		t.Fatal("write the open password file")
	}
	t.Setenv("APISESSIONS_TEST_REDIS_PW", "from-env")
	tests := []struct {
		name    string
		r       config.Redis
		want    string
		wantErr string
	}{
		{name: "none", r: config.Redis{}},
		{name: "private file", r: config.Redis{PasswordFile: private}, want: "s3cret"},
		{name: "file readable by others", r: config.Redis{PasswordFile: open}, wantErr: "state.redis.password_file " + open + " is readable by others"},
		{name: "variable", r: config.Redis{PasswordEnv: "APISESSIONS_TEST_REDIS_PW"}, want: "from-env"},
		{name: "unset variable", r: config.Redis{PasswordEnv: "APISESSIONS_TEST_UNSET"}, wantErr: "state.redis.password_env names APISESSIONS_TEST_UNSET, which is unset or empty"},
	}
	for _, tc := range tests {
		got, err := redisPassword(&tc.r)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v; want one saying %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}
}
