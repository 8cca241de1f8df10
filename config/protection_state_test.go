package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProtectionStateValidate(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	const params = `parameters:
  - {name: login_user, in: request.body, path: $.username, hashed: true}
  - {name: order, in: request.query, key: order}
  - {name: answer, in: response.header, key: x-id}
`
	tests := []problemCase{
		{
			name: "every kind valid",
			yaml: params + `protection:
  login:
    routes: [/api/login]
    username: login_user
    failure: {status: [401], header: x-login-failed}
  rules:
    - name: reset-then-email
      sequence:
        steps: [{routes: [/api/password/reset]}, {routes: [/api/account/email], methods: [put]}]
        within: 5m
      action: block
    - name: checkout-without-cart
      match: {routes: [/api/checkout]}
      requires: {step: {routes: [/api/cart]}, within: 30m}
      action: tag
    - name: walk
      match: {routes: ["/api/orders/{id}"]}
      enumeration: {more_than: 20, within: 1m, by: ip}
      action: block
    - name: walk-param
      enumeration: {more_than: 20, within: 1m, param: order}
      action: block
    - {name: stuffing, action: block, count: {of: distinct_usernames, more_than: 5, within: 10m}}
    - {name: spraying, action: tag, count: {of: distinct_sessions, more_than: 10, within: 1h}}
    - {name: failures, action: block, count: {of: failed_logins, more_than: 5, within: 10m, by: user}}
    - {name: busy-ip, action: tag, count: {of: requests, more_than: 1000, within: 1m, by: ip}}
`,
		},
		{
			name: "problems name the line and the fix",
			yaml: params + `protection:
  login:
    username: answer
    failure: {status: [42]}
  rules:
    - name: s
      sequence: {steps: [{routes: [/a]}], within: 0s}
      action: block
    - name: r
      requires: {step: {}, within: 48h}
      action: rate_limit
      rate_limit: {rate: 1/s}
    - name: e
      enumeration: {more_than: -1, within: 1m, by: session_route, param: answer}
      count: {of: requests, more_than: 1, within: 1m}
      action: block
    - {name: c1, action: tag, count: {of: failed_login, more_than: 5, within: 1m}}
    - {name: c2, action: tag, count: {of: distinct_sessions, more_than: 5, within: 1m, by: session}}
`,
			want: []string{
				f + `:6: protection.login.routes: is missing; list the login route templates, e.g. [/api/login]`,
				f + `:7: protection.login.username: "answer" reads the response; a username is read from the login request (in: request.body, request.header, request.query or request.cookie)`,
				f + `:8: protection.login.failure.status[0]: 42 is not an HTTP status; use 100 to 599, e.g. 401`,
				f + `:11: protection.rules[0].sequence.steps: has 1 steps; write 2 to 16, in the order they must come (or use requires for one step that must come before)`,
				f + `:11: protection.rules[0].sequence.within: 0s is not a window; write a duration from 1s to 24h, e.g. 5m`,
				f + `:14: protection.rules[1].requires: is set on a rate_limit rule; use it with action block or tag (a rate limit counts requests itself)`,
				f + `:14: protection.rules[1].requires.step: has no condition and would match every request; write e.g. {routes: [/api/cart], methods: [GET]}`,
				f + `:14: protection.rules[1].requires.within: 48h0m0s is not a window; write a duration from 1s to 24h, e.g. 5m`,
				f + `:18: protection.rules[2].enumeration.more_than: -1 is out of range; use 0 to 1000`,
				f + `:18: protection.rules[2].enumeration.by: "session_route" is not a key here; use session or user or ip`,
				f + `:18: protection.rules[2].enumeration.param: "answer" names no request parameter; declare it under parameters or leave param out to use the path's {id} segments`,
				f + `:19: protection.rules[2].count: is set with enumeration; a rule has at most one of sequence, requires, enumeration, count (write two rules)`,
				f + `:21: protection.rules[3].count.of: "failed_login" is not a signal (did you mean "failed_logins"?); use one of requests, failed_logins, distinct_usernames, distinct_sessions`,
				f + `:22: protection.rules[4].count.by: "session" is not a key here; use user`,
			},
		},
	}
	runProblemCases(t, f, tests)
}

func TestLoginSignalNeedsLogin(t *testing.T) {
	t.Parallel()
	_, err := parseAndValidate("f.yaml", []byte("protection:\n  rules:\n    - {name: c, action: tag, count: {of: distinct_usernames, more_than: 5, within: 1m}}\n"), envMap(nil), nil)
	want := []string{`f.yaml:3: protection.rules[0].count.of: distinct_usernames counts login outcomes; configure protection.login (routes, username, failure)`}
	if diff := cmp.Diff(want, problemLines(t, err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	c, err := parseAndValidate("f.yaml", []byte("protection:\n  login: {routes: [/login]}\n  rules:\n    - {name: c, action: tag, count: {of: distinct_sessions, more_than: 5, within: 1m}}\n    - {name: d, action: tag, count: {of: failed_logins, more_than: 5, within: 1m}}\n"), envMap(nil), nil)
	if err == nil {
		t.Fatal("distinct_sessions without a username accepted")
	}
	_ = c
}
