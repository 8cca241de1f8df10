package protect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// benchRules is 20 rules of every kind of condition, none of which decides for the
// benchmark's request: the rate limit's bucket never empties, and of the window rules (a
// sequence, a requires, an enumeration and counts of requests and of login signals) those that
// match the request keep their windows but stay under their thresholds. The common path,
// where every rule is tried.
func benchRules() string {
	var b strings.Builder
	b.WriteString(`parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: user, in: request.header, key: x-user, type: user}
  - {name: role, in: request.header, key: x-role, type: role}
  - {name: login_user, in: request.body, path: $.username, hashed: true}
protection:
  login: {routes: [/login], username: login_user}
  rules:
    - {name: seq, action: block, sequence: {steps: [{routes: ["/api/items/{id}"]}, {routes: [/checkout]}], within: 5m}}
    - {name: req, action: tag, match: {routes: [/checkout]}, requires: {step: {routes: [/cart]}, within: 30m}}
    - {name: enum, action: block, match: {routes: ["/api/items/{id}"]}, enumeration: {more_than: 100, within: 1m}}
    - {name: cnt, action: block, count: {of: requests, more_than: 50, within: 1s, by: ip}}
    - {name: stuffing, action: block, count: {of: distinct_usernames, more_than: 5, within: 10m}}
    - {name: spraying, action: block, count: {of: distinct_sessions, more_than: 5, within: 10m}}
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
	for i := range 13 {
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
			e, ck := newEngine(b, tc.yaml)
			x := benchExchange()
			b.ReportAllocs()
			for b.Loop() {
				// 10 requests a second: the count's window holds about 10 of them.
				ck.add(100 * time.Millisecond)
				var d traffic.Decision
				e.Decide(x, true, true, &d)
				if d.Status != 0 {
					b.Fatalf("decided %+v", d)
				}
			}
		})
	}
}
