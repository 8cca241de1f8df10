package protect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// benchRules is 20 rules of every kind of condition, none of which matches the benchmark's
// request except the rate limit, whose bucket never empties: the common path, where every
// rule is tried.
func benchRules() string {
	var b strings.Builder
	b.WriteString(`parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: user, in: request.header, key: x-user, type: user}
  - {name: role, in: request.header, key: x-role, type: role}
protection:
  rules:
`)
	kinds := []string{
		`{routes: ["/admin/{id}"]}`,
		`{methods: [DELETE], roles: [guest]}`,
		`{users: [mallory, eve]}`,
		`{client_ips: [203.0.113.0/24, "2001:db8::/32"]}`,
		`{flows: [admin], methods: [POST]}`,
		`{malicious: true}`,
		`{keys: [fallback], routes: [/login]}`,
		`{ja3: [e7d705a3286e19ea42f587b344ee6865]}`,
		`{ja4: [t13d1516h2_8daaf6152771_b0da82dd1658]}`,
		`{attack_types: [sqli]}`,
		`{risk_at_least: 90}`,
	}
	for i := range 19 {
		fmt.Fprintf(&b, "    - {name: r%d, action: block, match: %s}\n", i, kinds[i%len(kinds)])
	}
	b.WriteString("    - {name: limit, action: rate_limit, rate_limit: {rate: 1000000000/s}}\n")
	return b.String()
}

func benchExchange() *traffic.Exchange {
	return exchange("GET", "/api/items/12345?token=abcdef0123456789", "198.51.100.7",
		"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"x-user", "alice", "x-role", "customer", "accept", "application/json")
}

// BenchmarkDecide measures Decide per request: with no rule it is the engine's Peek alone
// (what inline mode pays anyway), with 20 rules the added facts and matching.
func BenchmarkDecide(b *testing.B) {
	for _, tc := range []struct {
		name, yaml string
	}{
		{"rules=0", "parameters:\n  - {name: token, in: request.query, key: token, group: true}\n"},
		{"rules=20", benchRules()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, _ := newEngine(b, tc.yaml)
			x := benchExchange()
			b.ReportAllocs()
			for b.Loop() {
				var d traffic.Decision
				e.Decide(x, true, &d)
				if d.Status != 0 {
					b.Fatalf("decided %+v", d)
				}
			}
		})
	}
}
