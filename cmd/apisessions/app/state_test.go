package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

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
		{name: "reachable", addr: addr, want: []string{"apisessions_state_up 1", `apisessions_state_round_trip_seconds_count{op="observe"} 2`, `apisessions_state_errors_total{op="observe"} 0`}},
		{name: "unreachable", addr: closed, want: []string{"apisessions_state_up 0", `apisessions_state_skipped_total{op="observe"} 2`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fmt.Sprintf("state:\n  redis:\n    address: %q\n    key_prefix: %q\n    timeout: 500ms\nsinks:\n  - type: jsonl\n    path: stdout\n", tc.addr, prefix+tc.name+":")
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
			page := scrape(t, r.httpAddr)
			for _, line := range tc.want {
				if !strings.Contains(page, line) {
					t.Errorf("/metrics lacks %q", line)
				}
			}
		})
	}
}
