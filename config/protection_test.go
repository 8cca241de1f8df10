package config

import (
	"testing"
	"time"
)

func TestProtectionValidate(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []problemCase{
		{
			name: "every action valid",
			yaml: `protection:
  rules:
    - name: block-bad
      match: {roles: [guest], routes: ["/admin/{id}"], methods: [delete], client_ips: [203.0.113.0/24, "2001:db8::1"], keys: [fallback, "builtin:cookie:PHPSESSID"], flows: [auth], malicious: true}
      action: block
      block: {body: "blocked", headers: {X-Blocked-By: apisessions}}
    - name: slow-down
      action: rate_limit
      rate_limit: {rate: 300/5m, burst: 10, by: session_route}
      dry_run: true
    - name: mark
      action: tag
`,
		},
		{
			name: "problems name the rule's line and the fix",
			yaml: `protection:
  rules:
    - action: blok
    - name: a
      action: rate_limit
      rate_limit: {rate: 10, by: nobody}
    - name: a
      action: block
      tag: {header: x-v}
      block: {status: 99, headers: {":path": x}}
      match: {flows: [authh], client_ips: [300.1.1.1], keys: [cookie], routes: [api]}
    - name: t
      action: tag
      tag: {header: x-envoy-verdict}
`,
			want: []string{
				f + `:3: protection.rules[0].name: is missing; name the rule, e.g. block-scanners (it appears in records and metrics)`,
				f + `:3: protection.rules[0].action: "blok" is not an action (did you mean "block"?); use one of block, rate_limit, tag`,
				f + `:6: protection.rules[1].rate_limit.rate: "10" is not a rate; write requests per period, e.g. 10/s, 600/m or 300/5m`,
				f + `:6: protection.rules[1].rate_limit.by: "nobody" is not a bucket key; use session (one bucket per session), session_route (per session and route template), user or ip`,
				f + `:7: protection.rules[2].name: "a" is also the name of protection.rules[1]; give each rule its own name`,
				f + `:9: protection.rules[2].tag: is set but the action is block; remove it or set action: tag`,
				f + `:10: protection.rules[2].block.status: 99 is not an HTTP status to answer with; use 200 to 599, e.g. 403 (the default)`,
				f + `:10: protection.rules[2].block.headers.:path: is not a header name Envoy can send; use letters, digits and -, e.g. x-blocked-by`,
				f + `:11: protection.rules[2].match.keys[0]: "cookie" is not a grouping key kind; use param, builtin or fallback, or param:<name> / builtin:<name> for one key (e.g. builtin:cookie:PHPSESSID)`,
				f + `:11: protection.rules[2].match.routes[0]: "api" is not a route template; write it as records show it, starting with /, e.g. /api/items/{id}`,
				f + `:11: protection.rules[2].match.flows[0]: "authh" is not a business flow (did you mean "auth"?); use one of ai_llm, account_creation, account_management, admin, auth, billing, sms_gateway`,
				f + `:11: protection.rules[2].match.client_ips[0]: "300.1.1.1" is not an IP address or prefix; write e.g. 203.0.113.7 or 203.0.113.0/24`,
				f + `:14: protection.rules[3].tag.header: "x-envoy-verdict" is a header Envoy does not let ext_proc set; choose another name such as x-apisessions-verdict`,
			},
		},
		{
			name: "unknown key in a rule",
			yaml: "protection:\n  rules:\n    - name: a\n      action: tag\n      match: {usr: [x]}\n",
			want: []string{f + `:5: protection.rules[0].match: unknown key "usr"; the keys here are keys, users, roles, routes, methods, flows, malicious, attack_types, client_ips, ja3, ja4, risk_at_least`},
		},
	}
	runProblemCases(t, f, tests)
}

func TestProtectionDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseAndValidate("f.yaml", []byte("protection:\n  rules:\n    - {name: b, action: block, match: {methods: [post]}}\n    - {name: t, action: tag}\n    - {name: r, action: rate_limit, rate_limit: {rate: 5/s}}\n"), envMap(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Protection.Rules
	if r[0].Block.Status != 403 || r[0].Match.Methods[0] != "POST" || r[1].Tag.Header != DefaultVerdictHeader || r[2].RateLimit.By != BySession {
		t.Errorf("defaults not applied: %+v", r)
	}
	if c.Protection.MaxBuckets != DefaultMaxBuckets {
		t.Errorf("max_buckets = %d", c.Protection.MaxBuckets)
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]int64{"10/s": {10, int64(time.Second)}, "600/m": {600, int64(time.Minute)}, "1/h": {1, int64(time.Hour)}, "300/5m": {300, int64(5 * time.Minute)}} {
		n, per, err := ParseRate(in)
		if err != nil || int64(n) != want[0] || int64(per) != want[1] {
			t.Errorf("ParseRate(%q) = %d, %v, %v", in, n, per, err)
		}
	}
	for _, bad := range []string{"", "10", "0/s", "-1/s", "x/s", "10/", "10/y", "10/-5s", "10/100h", "10/1ns"} {
		if _, _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}
