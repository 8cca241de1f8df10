package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/internal/testutil"
)

// rulesConfig has a rule of each window kind over the demo API; the demo's /login reads
// {"username", "password"} and answers 401 to a wrong password.
const rulesConfig = `
parameters:
  - {name: query_token, in: request.query, key: token, group: true, hashed: true}
  - {name: login_user, in: request.body, path: $.username, hashed: true}
protection:
  login:
    routes: [/login]
    username: login_user
  rules:
    - name: pay-after-cart
      sequence:
        steps: [{routes: [/api/cart], methods: [POST]}, {routes: [/api/payments], methods: [POST]}]
        within: 5m
      action: block
    - name: order-walk
      match: {routes: ["/api/orders/{id}"]}
      enumeration: {more_than: 5, within: 1m}
      action: block
    - name: credential-stuffing
      count: {of: distinct_usernames, more_than: 5, within: 10m}
      action: block
    - name: password-spraying
      count: {of: distinct_sessions, more_than: 5, within: 10m}
      action: block
sinks:
  - {type: jsonl, path: "-", flush_interval: 5ms}
`

// TestRules drives the window rules through the Envoy-faithful proxy in inline mode.
func TestRules(t *testing.T) {
	t.Parallel()
	srv, up := startServer(t, rulesConfig), startUpstream(t)
	inline := startFront(t, srv, up, envoy.ModeInline, nil)
	c := client{addr: "198.51.100.50:40000", ua: "rules-test/1.0"}

	// login posts a login and waits for its record: its outcome counts from then on.
	login := func(t *testing.T, c client, user, password string, extra ...string) reply {
		t.Helper()
		r := inline.do(t, c, "POST", "/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password), extra...)
		srv.record(t, r.id)
		return r
	}

	t.Run("a sequence fires in order and not out of order", func(t *testing.T) {
		if r := inline.do(t, c, "POST", "/api/payments?token=seq-a", `{}`); r.status == 403 {
			t.Fatal("a payment alone was blocked")
		}
		if r := inline.do(t, c, "POST", "/api/cart?token=seq-a", `{}`); r.status == 403 {
			t.Fatal("a cart after a payment was blocked")
		}
		inline.do(t, c, "POST", "/api/cart?token=seq-b", `{}`)
		r := inline.do(t, c, "POST", "/api/payments?token=seq-b", `{}`)
		if r.status != 403 || up.headers(r.id) != nil {
			t.Fatalf("payment after cart: %d, upstream saw it: %v", r.status, up.headers(r.id) != nil)
		}
		if p := protection(srv.record(t, r.id)); p["rule"] != "pay-after-cart" || p["action"] != "block" {
			t.Errorf("protection %v", p)
		}
	})

	t.Run("enumeration fires past N distinct ids, not for repeats of one", func(t *testing.T) {
		for i := range 8 {
			if r := inline.do(t, c, "GET", "/api/orders/7?token=enum-same", ""); r.status == 403 {
				t.Fatalf("repeat %d of one id blocked", i)
			}
		}
		for i := 1; i <= 5; i++ {
			if r := inline.do(t, c, "GET", fmt.Sprintf("/api/orders/%d?token=enum-walk", i), ""); r.status == 403 {
				t.Fatalf("id %d of 5 blocked", i)
			}
		}
		r := inline.do(t, c, "GET", "/api/orders/6?token=enum-walk", "")
		if p := protection(srv.record(t, r.id)); r.status != 403 || p["rule"] != "order-walk" {
			t.Errorf("sixth distinct id: %d, protection %v", r.status, p)
		}
	})

	t.Run("credential stuffing: one client, many usernames", func(t *testing.T) {
		attacker := client{addr: "203.0.113.66:40000", ua: "stuffer/1.0"}
		blockedAt := -1
		for i := range 50 {
			r := login(t, attacker, fmt.Sprintf("victim%02d", i), "guess")
			if r.status == 403 {
				blockedAt = i
				if p := protection(srv.record(t, r.id)); p["rule"] != "credential-stuffing" {
					t.Errorf("protection %v", p)
				}
				break
			}
			if r.status != 401 {
				t.Fatalf("login %d: %d, want the demo's 401", i, r.status)
			}
		}
		if blockedAt != 6 {
			t.Errorf("blocked at login %d, want 6 (after six usernames)", blockedAt)
		}
	})

	t.Run("not for 50 honest users behind one address", func(t *testing.T) {
		nat := client{addr: "192.0.2.200:40000", ua: "Mozilla/5.0 (shared office build)"}
		for i := range 50 {
			cookie := fmt.Sprintf("PHPSESSID=honest-visitor-%02d-0123456789abcdef", i)
			r := login(t, nat, fmt.Sprintf("user%02d", i), "demo", "cookie", cookie)
			if r.status != 200 {
				t.Fatalf("honest login %d: %d", i, r.status)
			}
			if r := inline.do(t, nat, "GET", "/api/orders", "", "cookie", cookie); r.status == 403 {
				t.Fatalf("honest user %d blocked after logging in", i)
			}
		}
	})

	t.Run("password spraying: one username, many sessions", func(t *testing.T) {
		sprayer := client{addr: "203.0.113.77:40000", ua: "sprayer/1.0"}
		for i := range 6 {
			cookie := fmt.Sprintf("PHPSESSID=spray-%02d-0123456789abcdef", i)
			if r := login(t, sprayer, "alice", fmt.Sprintf("Winter%d!", i), "cookie", cookie); r.status != 401 {
				t.Fatalf("spray login %d: %d", i, r.status)
			}
		}
		// Six sessions tried alice: the sixth's next request is refused.
		r := inline.do(t, sprayer, "POST", "/login", `{"username":"alice","password":"Spring1!"}`, "cookie", "PHPSESSID=spray-05-0123456789abcdef")
		if p := protection(srv.record(t, r.id)); r.status != 403 || p["rule"] != "password-spraying" {
			t.Errorf("after six sessions: %d, protection %v", r.status, p)
		}
	})
}

// TestRulesReplicas runs two replicas sharing Redis, each behind its own proxy: an
// enumeration walked half through each is counted once, and the usernames one client tries
// through both add up to one credential-stuffing count.
func TestRulesReplicas(t *testing.T) {
	t.Parallel()
	addr, prefix := testutil.RedisPrefix(t)
	cfg := rulesConfig + `hashing:
  key_file: ` + oracleKey(t) + `
state:
  redis: {address: "` + addr + `", key_prefix: "` + prefix + `", timeout: 1s}
`
	a, b := startServer(t, cfg), startServer(t, cfg)
	up := startUpstream(t)
	fa, fb := startFront(t, a, up, envoy.ModeInline, nil), startFront(t, b, up, envoy.ModeInline, nil)
	c := client{addr: "198.51.100.60:40000", ua: "rules-replicas/1.0"}

	t.Run("one enumeration count", func(t *testing.T) {
		for i, f := range []*front{fa, fb, fa, fb, fa} {
			if r := f.do(t, c, "GET", fmt.Sprintf("/api/orders/%d?token=walk", i+1), ""); r.status == 403 {
				t.Fatalf("id %d of 5 blocked", i+1)
			}
		}
		r := fb.do(t, c, "GET", "/api/orders/6?token=walk", "")
		if p := protection(b.record(t, r.id)); r.status != 403 || p["rule"] != "order-walk" {
			t.Errorf("sixth distinct id through the other replica: %d, protection %v", r.status, p)
		}
	})

	t.Run("one credential stuffing count", func(t *testing.T) {
		attacker := client{addr: "203.0.113.99:40000", ua: "stuffer-replicas/1.0"}
		for i := range 6 {
			f, s := fa, a
			if i%2 == 1 {
				f, s = fb, b
			}
			r := f.do(t, attacker, "POST", "/login", fmt.Sprintf(`{"username":"victim%d","password":"x"}`, i))
			if r.status != 401 {
				t.Fatalf("login %d: %d", i, r.status)
			}
			s.record(t, r.id)
		}
		// The outcomes reach Redis off the request's path: allow them a moment.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			r := fa.do(t, attacker, "GET", "/api/items", "")
			if r.status == 403 {
				if p := protection(a.record(t, r.id)); p["rule"] != "credential-stuffing" {
					t.Errorf("protection %v", p)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("six usernames tried through two replicas were never counted together")
			}
		}
	})
}
