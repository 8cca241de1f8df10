package protect

import (
	"testing"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// FuzzDecide sends attacker-written requests through every kind of rule: Decide must neither
// panic nor block, and a block or rate limit it answers must carry a status.
func FuzzDecide(f *testing.F) {
	f.Add("GET", "/api/items/1?token=a", "198.51.100.7:1", "x-user", "alice", "x-role", "guest")
	f.Add("DELETE", "/admin/%ff/../", "[2001:db8::1]:80", "x-client-ja3", "e7d705a3286e19ea42f587b344ee6865", "authorization", "Bearer a.b.c")
	f.Add("\x00", "", "not an address", "", "", "cookie", "PHPSESSID=\xff")
	e, _ := newEngine(f, benchRules()+"    - {name: tag-all, action: tag}\n")
	f.Fuzz(func(t *testing.T, method, path, addr, h1, v1, h2, v2 string) {
		x := &traffic.Exchange{Method: method, Host: "api.example.com", Path: path, SourceAddress: addr,
			RequestHeaders: []traffic.Header{{Name: h1, Value: v1}, {Name: h2, Value: v2}}}
		for _, enforce := range []bool{true, false} {
			var d traffic.Decision
			e.Decide(x, enforce, true, &d)
			if d.Verdict.Action != "" && d.Verdict.Rule == "" {
				t.Fatalf("a verdict without a rule: %+v", d)
			}
			if !enforce && (d.Status != 0 || d.TagHeader != "") {
				t.Fatalf("observability mode acted: %+v", d)
			}
			if (d.Verdict.Action == "block" || d.Verdict.Action == "rate_limit") && enforce && !d.Verdict.DryRun && d.Status == 0 {
				t.Fatalf("a block without a status: %+v", d)
			}
		}
	})
}
