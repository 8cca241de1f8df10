package protect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/traffic"
)

const stateYAML = `parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: user, in: request.header, key: x-user, type: user}
  - {name: login_user, in: request.header, key: x-login, hashed: true}
protection:
  login:
    routes: [/login]
    username: login_user
    failure: {status: [401], header: x-login-failed}
  rules:
    - name: reset-then-email
      sequence:
        steps: [{routes: [/password/reset], methods: [POST]}, {routes: [/account/email], methods: [PUT]}]
        within: 5m
      action: block
    - name: checkout-without-cart
      match: {routes: [/checkout]}
      requires: {step: {routes: [/cart], methods: [GET]}, within: 30m}
      action: tag
    - name: order-walk
      match: {routes: ["/orders/{id}"]}
      enumeration: {more_than: 3, within: 1m}
      action: block
    - name: stuffing
      count: {of: distinct_usernames, more_than: 5, within: 10m}
      action: block
    - name: spraying
      count: {of: distinct_sessions, more_than: 5, within: 10m}
      action: block
    - name: failures
      count: {of: failed_logins, more_than: 3, within: 10m}
      action: tag
      dry_run: true
    - name: busy-ip
      match: {routes: [/search]}
      count: {of: requests, more_than: 2, within: 1m, by: ip}
      action: block
`

// req decides a request of session token (by its query token) and returns the verdict's rule
// ("" for none).
func req(e *Engine, method, path, token string, headers ...string) string {
	d, _ := decide(e, exchange(method, path+"?token="+token, "192.0.2.1", headers...), true)
	return d.Verdict.Rule
}

// tryLogin decides a login request, then tells the engine its outcome as the upstream answered.
func tryLogin(e *Engine, token, user, ip string, status int) string {
	x := exchange("POST", "/login?token="+token, ip, "x-login", user)
	var d traffic.Decision
	s, _, _ := e.Decide(x, true, true, &d)
	x.Verdict = d.Verdict
	if d.Status == 0 {
		x.Status, x.ResponseSeen = status, true
		e.Outcome(x, s)
	}
	return d.Verdict.Rule
}

func TestSequenceInOrderOnly(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, stateYAML)
	// Out of order: the e-mail change first, then the reset: nothing fires.
	if got := req(e, "PUT", "/account/email", "a"); got != "" {
		t.Errorf("email change alone: %q", got)
	}
	if got := req(e, "POST", "/password/reset", "a"); got != "" {
		t.Errorf("reset: %q", got)
	}
	// Another session's e-mail change does not complete this session's sequence.
	if got := req(e, "PUT", "/account/email", "b"); got != "" {
		t.Errorf("other session: %q", got)
	}
	if got := req(e, "GET", "/unrelated", "a"); got != "" {
		t.Errorf("unrelated: %q", got)
	}
	if got := req(e, "PUT", "/account/email", "a"); got != "reset-then-email" {
		t.Errorf("reset then email change: %q, want reset-then-email", got)
	}
	// Past the window the first step is forgotten.
	req(e, "POST", "/password/reset", "c")
	ck.add(6 * time.Minute)
	if got := req(e, "PUT", "/account/email", "c"); got != "" {
		t.Errorf("email change 6m after the reset: %q", got)
	}
}

func TestRequiresStep(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, stateYAML)
	if got := req(e, "POST", "/checkout", "a"); got != "checkout-without-cart" {
		t.Errorf("checkout without cart: %q", got)
	}
	req(e, "GET", "/cart", "b")
	if got := req(e, "POST", "/checkout", "b"); got != "" {
		t.Errorf("checkout after cart: %q", got)
	}
	ck.add(31 * time.Minute)
	if got := req(e, "POST", "/checkout", "b"); got != "checkout-without-cart" {
		t.Errorf("checkout 31m after the cart: %q", got)
	}
}

func TestEnumeration(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, stateYAML)
	for i := range 10 {
		if got := req(e, "GET", "/orders/7", "same"); got != "" {
			t.Fatalf("repeat %d of one id: %q", i, got)
		}
	}
	for i := 1; i <= 3; i++ {
		if got := req(e, "GET", fmt.Sprintf("/orders/%d", i), "walk"); got != "" {
			t.Fatalf("id %d of 3: %q", i, got)
		}
	}
	if got := req(e, "GET", "/orders/4", "walk"); got != "order-walk" {
		t.Errorf("fourth distinct id: %q", got)
	}
	ck.add(2 * time.Minute)
	if got := req(e, "GET", "/orders/5", "walk"); got != "" {
		t.Errorf("after the window: %q", got)
	}
}

func TestCountRequestsByIP(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, stateYAML)
	for i, tok := range []string{"a", "b"} {
		if got := req(e, "GET", "/search", tok); got != "" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if got := req(e, "GET", "/search", "c"); got != "busy-ip" {
		t.Errorf("third request of the address: %q", got)
	}
	ck.add(time.Minute)
	if got := req(e, "GET", "/search", "d"); got != "" {
		t.Errorf("after the window: %q", got)
	}
}

func TestCredentialStuffing(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, stateYAML)
	// One client, one session, usernames one after another.
	var fired int
	for i := range 50 {
		if tryLogin(e, "attacker", fmt.Sprintf("victim%d", i), "203.0.113.5", 401) == "stuffing" {
			fired = i
			break
		}
	}
	if fired != 6 {
		t.Errorf("stuffing fired at login %d, want 6 (after 6 distinct usernames)", fired)
	}
	// 50 honest users behind one address, each in their own session, log in once.
	for i := range 50 {
		if got := tryLogin(e, fmt.Sprintf("honest%d", i), fmt.Sprintf("user%d", i), "198.51.100.1", 200); got != "" {
			t.Fatalf("honest user %d: %q", i, got)
		}
		if got := req(e, "GET", "/home", fmt.Sprintf("honest%d", i)); got != "" {
			t.Fatalf("honest user %d after login: %q", i, got)
		}
	}
	// Usernames are kept as HMACs only: no window holds one in the clear.
	for i := range e.windows.shards {
		for _, w := range e.windows.shards[i].m {
			if w.last != "" && (len(w.last) != len("user:hmac:")+32) {
				t.Errorf("a window keeps %q", w.last)
			}
		}
	}
}

func TestPasswordSprayingAndFailures(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, stateYAML)
	for i := range 6 {
		tryLogin(e, fmt.Sprintf("spray%d", i), "admin", "203.0.113.9", 401)
	}
	// The sixth session tried the username six sessions tried: its next request is refused.
	if got := req(e, "GET", "/home", "spray5"); got != "spraying" {
		t.Errorf("after six sessions tried one username: %q", got)
	}
	// A session that never tried it is not affected.
	if got := req(e, "GET", "/home", "bystander"); got != "" {
		t.Errorf("bystander: %q", got)
	}
	// Four failures in one session, one username: the dry run shows.
	for range 4 {
		tryLogin(e, "clumsy", "bob", "192.0.2.7", 401)
	}
	if got := req(e, "GET", "/home", "clumsy"); got != "failures" {
		t.Errorf("after four failed logins: %q", got)
	}
	// A failure header marks a 200 as a failure; a success is not one.
	x := exchange("POST", "/login?token=hdr", "192.0.2.8", "x-login", "carol")
	for range 4 {
		y := *x
		y.Status, y.ResponseSeen = 200, true
		y.ResponseHeaders = []traffic.Header{{Name: "X-Login-Failed", Value: "1"}}
		_, s, _ := decideFull(e, &y)
		e.Outcome(&y, s)
	}
	if got := req(e, "GET", "/home", "hdr"); got != "failures" {
		t.Errorf("after four 200s with x-login-failed: %q", got)
	}
	for range 4 {
		tryLogin(e, "fine", "dave", "192.0.2.9", 200)
	}
	if got := req(e, "GET", "/home", "fine"); got != "" {
		t.Errorf("after four successful logins: %q", got)
	}
}

func decideFull(e *Engine, x *traffic.Exchange) (traffic.Decision, string, string) {
	var d traffic.Decision
	s, p, _ := e.Decide(x, true, true, &d)
	return d, s, p
}

func TestWindowsBounded(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, `parameters:
  - {name: token, in: request.query, key: token, group: true}
protection:
  max_windows: 64
  rules:
    - {name: c, action: tag, count: {of: requests, more_than: 1000, within: 1h}}
`)
	for i := range 1000 {
		req(e, "GET", "/", fmt.Sprint(i))
	}
	if st := e.Stats(); st.Windows > 64 || st.WindowsEvicted == 0 {
		t.Errorf("windows %d, evicted %d", st.Windows, st.WindowsEvicted)
	}
}

// downWindows is shared state that never answers.
type downWindows struct{ Shared }

func (downWindows) DecideWindows(context.Context, string, bool, []Take, []WindowOp) (sessions.PartState, bool, bool) {
	return sessions.PartState{}, false, false
}
func (downWindows) Record(context.Context, []WindowOp) error { return errors.New("down") }

func TestSharedWindowsDownFailOpenOnLocal(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, stateYAML)
	e.sharedWin = downWindows{}
	for i := 1; i <= 3; i++ {
		if got := req(e, "GET", fmt.Sprintf("/orders/%d", i), "down"); got != "" {
			t.Fatalf("id %d: %q", i, got)
		}
	}
	if got := req(e, "GET", "/orders/4", "down"); got != "order-walk" {
		t.Errorf("the replica's own windows decide: %q", got)
	}
	if st := e.Stats(); st.Local < 4 {
		t.Errorf("local decisions counted %d, want at least 4", st.Local)
	}
}

// noParts is shared part state that knows no session and never changes.
type noParts struct{}

func (noParts) ObserveParts(_ context.Context, us []sessions.PartUpdate) {
	for i := range us {
		us[i].OK = true
	}
}
func (noParts) PeekPart(context.Context, string) (sessions.PartState, bool, bool) {
	return sessions.PartState{}, false, true
}

// countingShared records the round trips Decide asks for: whether each read the part.
type countingShared struct {
	Shared
	reads []bool
}

func (s *countingShared) Decide(_ context.Context, _ string, readPart bool, _ []Take) (sessions.PartState, bool, bool) {
	s.reads = append(s.reads, readPart)
	return sessions.PartState{}, false, true
}

// A caller that does not use the part (an inline answer without dynamic metadata) makes Decide
// read no shared state for it: with rules that take nothing from Redis, no round trip at all.
func TestDecideWithoutPartReadsNoSharedState(t *testing.T) {
	t.Parallel()
	cfg, err := config.ParseAndValidate("test.yaml", []byte(`parameters:
  - {name: token, in: request.query, key: token, group: true}
protection:
  rules:
    - {name: admin, action: block, match: {routes: ["/admin/{id}"]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	se, err := sessions.New(cfg, sessions.Settings{Emitter: discard{}, HashKey: []byte(strings.Repeat("k", 32)), SharedParts: noParts{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(se.Close)
	e := New(cfg.Protection, se, nil)
	sh := &countingShared{}
	e.shared = sh
	var d traffic.Decision
	x := exchange("GET", "/orders/1?token=abc", "192.0.2.1")
	s, p, _ := e.Decide(x, true, false, &d)
	if len(sh.reads) != 0 || s == "" || p != "" {
		t.Errorf("without the part: round trips %v, session %q, part %q; want none, a session and no part", sh.reads, s, p)
	}
	s2, p2, _ := e.Decide(x, true, true, &d)
	if len(sh.reads) != 1 || !sh.reads[0] || s2 != s || p2 == "" {
		t.Errorf("with the part: round trips %v, session %q, part %q; want one read of the part, %q and a part", sh.reads, s2, p2, s)
	}
}
