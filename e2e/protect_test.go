package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/internal/testutil"
)

// protectConfig groups by a query token and acts on routes of the demo API.
const protectConfig = `
parameters:
  - {name: query_token, in: request.query, key: token, group: true, hashed: true}
protection:
  rules:
    - name: no-order-details
      match: {routes: ["/api/orders/{id}"]}
      action: block
      block: {body: "no order details\n", headers: {x-blocked-by: apisessions}}
    - name: watch-net
      match: {client_ips: [203.0.113.0/24]}
      action: block
      dry_run: true
    - name: items-limit
      match: {routes: [/api/items]}
      action: rate_limit
      rate_limit: {rate: 2/s}
    - name: mark-cart
      match: {routes: [/api/cart], methods: [POST]}
      action: tag
`

// protection returns the protection object of a request record, nil when there is none.
func protection(rec map[string]any) map[string]any {
	p, _ := rec["protection"].(map[string]any)
	return p
}

// TestProtection drives the protection rules through the Envoy-faithful proxy: a block
// answers 403 and the upstream never sees the request, a dry run lets it through and records
// it, a rate limit answers 429 with Retry-After and recovers, a tag reaches the upstream, and
// observability mode records what would have happened.
func TestProtection(t *testing.T) {
	t.Parallel()
	srv, up := startServer(t, protectConfig), startUpstream(t)
	inline := startFront(t, srv, up, envoy.ModeInline, nil)
	obs := startFront(t, srv, up, envoy.ModeObservability, nil)
	c := client{addr: "198.51.100.20:40000", ua: "protect-test/1.0"}

	t.Run("block", func(t *testing.T) {
		r := inline.do(t, c, "GET", "/api/orders/42?token=blk", "")
		if r.status != 403 || r.header.Get("x-blocked-by") != "apisessions" {
			t.Errorf("answer %d, x-blocked-by %q; want 403 from the rule", r.status, r.header.Get("x-blocked-by"))
		}
		if up.headers(r.id) != nil {
			t.Error("the upstream saw a blocked request")
		}
		rec := srv.record(t, r.id)
		if p := protection(rec); p["action"] != "block" || p["rule"] != "no-order-details" || p["dry_run"] != nil || rec["status"] != 403.0 {
			t.Errorf("record: status %v, protection %v", rec["status"], p)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		r := inline.do(t, client{addr: "203.0.113.9:40000", ua: "watched/1.0"}, "GET", "/api/items?token=dry", "")
		if r.status == 403 || r.status == 429 || up.headers(r.id) == nil {
			t.Errorf("answer %d, upstream saw it: %v; a dry run must let it through", r.status, up.headers(r.id) != nil)
		}
		if p := protection(srv.record(t, r.id)); p["action"] != "block" || p["rule"] != "watch-net" || p["dry_run"] != true {
			t.Errorf("protection %v", p)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		for i := range 2 {
			if r := inline.do(t, c, "GET", "/api/items?token=rl", ""); r.status == 429 {
				t.Fatalf("request %d limited", i)
			}
		}
		r := inline.do(t, c, "GET", "/api/items?token=rl", "")
		if r.status != 429 || r.header.Get("retry-after") != "1" {
			t.Fatalf("third request: %d, Retry-After %q; want 429 and 1", r.status, r.header.Get("retry-after"))
		}
		if up.headers(r.id) != nil {
			t.Error("the upstream saw a limited request")
		}
		if p := protection(srv.record(t, r.id)); p["action"] != "rate_limit" || p["rule"] != "items-limit" {
			t.Errorf("protection %v", p)
		}
		// Another session has its own bucket.
		if r := inline.do(t, c, "GET", "/api/items?token=rl-other", ""); r.status == 429 {
			t.Error("another session was limited")
		}
		time.Sleep(1100 * time.Millisecond)
		if r := inline.do(t, c, "GET", "/api/items?token=rl", ""); r.status == 429 {
			t.Error("still limited after Retry-After")
		}
	})

	t.Run("tag", func(t *testing.T) {
		r := inline.do(t, c, "POST", "/api/cart?token=tag", `{"item":1}`)
		if got := up.headers(r.id).Get("x-apisessions-verdict"); got != "mark-cart" {
			t.Errorf("upstream saw x-apisessions-verdict %q, want mark-cart", got)
		}
		if p := protection(srv.record(t, r.id)); p["action"] != "tag" || p["rule"] != "mark-cart" {
			t.Errorf("protection %v", p)
		}
		// A client cannot tag itself: the header is overwritten, and absent without a verdict.
		r = inline.do(t, c, "GET", "/api/orders?token=tag", "", "x-apisessions-verdict", "forged")
		if got := up.headers(r.id).Get("x-apisessions-verdict"); got == "mark-cart" {
			t.Errorf("verdict header %q on an untagged request", got)
		}
	})

	t.Run("observability mode records what would have happened", func(t *testing.T) {
		r := obs.do(t, c, "GET", "/api/orders/7?token=obs", "")
		if r.status == 403 || up.headers(r.id) == nil {
			t.Errorf("answer %d: observability mode must not block", r.status)
		}
		if p := protection(srv.record(t, r.id)); p["action"] != "block" || p["rule"] != "no-order-details" || p["dry_run"] != true {
			t.Errorf("protection %v", p)
		}
	})
}

// TestManualBlock blocks a session through the API with a write token: its next request gets
// 403 from "Envoy" and never reaches the demo API, the record says so, the audit log names the
// token, and after the unblock the session goes through again.
func TestManualBlock(t *testing.T) {
	t.Parallel()
	tokens := filepath.Join(t.TempDir(), "write-tokens")
	const writeToken = "e2e-write-token-0123456789abcdef"
	if err := os.WriteFile(tokens, []byte("soc-oncall:"+writeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, protectConfig+"server:\n  write_tokens_file: "+tokens+"\n")
	up := startUpstream(t)
	inline := startFront(t, srv, up, envoy.ModeInline, nil)
	c := client{addr: "198.51.100.30:40000", ua: "manual-block/1.0"}

	first := inline.do(t, c, "GET", "/api/orders?token=mb", "")
	session, _ := srv.record(t, first.id)["session"].(string)
	if session == "" || up.headers(first.id) == nil {
		t.Fatalf("first request: session %q, upstream saw it: %v", session, up.headers(first.id) != nil)
	}
	api := func(method, body string) (int, map[string]any) {
		t.Helper()
		return blockAPI(t, srv, writeToken, session, method, body)
	}
	if code, m := api("POST", `{"for":"1h","reason":"credential stuffing"}`); code != 200 || m["block"] == nil {
		t.Fatalf("POST block: %d %v", code, m)
	}

	r := inline.do(t, c, "GET", "/api/orders?token=mb", "")
	if r.status != 403 || up.headers(r.id) != nil {
		t.Errorf("blocked session: answer %d, upstream saw it: %v", r.status, up.headers(r.id) != nil)
	}
	if p := protection(srv.record(t, r.id)); p["action"] != "block" || p["rule"] != "manual:session" {
		t.Errorf("protection %v", p)
	}
	// Another session is not affected.
	if r := inline.do(t, c, "GET", "/api/orders?token=mb-other", ""); r.status == 403 {
		t.Error("another session was blocked")
	}

	code, m := api("DELETE", "")
	audit, _ := m["audit"].([]any)
	if code != 200 || m["unblocked"] != true || len(audit) != 2 {
		t.Fatalf("DELETE block: %d %v", code, m)
	}
	if e, _ := audit[0].(map[string]any); e["by"] != "soc-oncall" || e["reason"] != "credential stuffing" {
		t.Errorf("audit entry %v", e)
	}
	if r := inline.do(t, c, "GET", "/api/orders?token=mb", ""); r.status == 403 || up.headers(r.id) == nil {
		t.Errorf("after the unblock: answer %d", r.status)
	}
}

// TestProtectionReplicas runs two replicas that share Redis, each behind its own front proxy:
// they enforce one rate limit together, and a session blocked through one replica's API is
// blocked by the other from its next request on, until the other lifts it.
func TestProtectionReplicas(t *testing.T) {
	t.Parallel()
	addr, prefix := testutil.RedisPrefix(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "write-tokens")
	const writeToken = "e2e-replicas-write-token-0123456789"
	if err := os.WriteFile(tokens, []byte("ops:"+writeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := protectConfig + `    - name: orders-limit
      match: {routes: [/api/orders]}
      action: rate_limit
      rate_limit: {rate: 3/m}
hashing:
  key_file: ` + oracleKey(t) + `
server:
  write_tokens_file: ` + tokens + `
state:
  redis: {address: "` + addr + `", key_prefix: "` + prefix + `", timeout: 1s}
`
	a, b := startServer(t, cfg), startServer(t, cfg)
	up := startUpstream(t)
	fa, fb := startFront(t, a, up, envoy.ModeInline, nil), startFront(t, b, up, envoy.ModeInline, nil)
	c := client{addr: "198.51.100.40:40000", ua: "replicas/1.0"}

	t.Run("one rate limit", func(t *testing.T) {
		for i, f := range []*front{fa, fb, fa} {
			if r := f.do(t, c, "GET", "/api/orders?token=shared-limit", ""); r.status == 429 {
				t.Fatalf("request %d limited", i)
			}
		}
		for i, f := range []*front{fb, fa} {
			r := f.do(t, c, "GET", "/api/orders?token=shared-limit", "")
			if r.status != 429 || r.header.Get("retry-after") == "" {
				t.Errorf("request %d past the shared limit: %d, Retry-After %q", 3+i, r.status, r.header.Get("retry-after"))
			}
		}
	})

	t.Run("a block reaches the other replica", func(t *testing.T) {
		first := fa.do(t, c, "GET", "/api/items?token=shared-block", "")
		session, _ := a.record(t, first.id)["session"].(string)
		api := func(s *server, method, body string) (int, map[string]any) {
			t.Helper()
			return blockAPI(t, s, writeToken, session, method, body)
		}
		if code, m := api(a, "POST", `{"for":"10m","reason":"shared"}`); code != 200 {
			t.Fatalf("block through replica a: %d %v", code, m)
		}
		// Replica b learns of it from Redis's message: allow it a moment.
		blocked := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			r := fb.do(t, c, "GET", "/api/items?token=shared-block", "")
			if r.status == 403 {
				blocked = true
				if up.headers(r.id) != nil {
					t.Error("the upstream saw a request replica b blocked")
				}
				break
			}
		}
		if !blocked {
			t.Fatal("replica b never blocked the session replica a blocked")
		}
		// The audit log is shared: replica b shows who blocked through replica a.
		if _, m := api(b, "GET", ""); len(m["audit"].([]any)) != 1 {
			t.Errorf("audit through replica b: %v", m)
		}
		if code, m := api(b, "DELETE", ""); code != 200 || m["unblocked"] != true {
			t.Fatalf("unblock through replica b: %d %v", code, m)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if r := fa.do(t, c, "GET", "/api/items?token=shared-block", ""); r.status != 403 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("replica a still blocks the session replica b unblocked")
			}
		}
	})
}

// blockAPI calls the block endpoint of session on s with the write token and returns the
// status and the decoded answer.
func blockAPI(t *testing.T, s *server, writeToken, session, method, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.httpAddr+"/api/v1/sessions/"+session+"/block", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+writeToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestRiskRule drives a risk_at_least rule through the Envoy-faithful proxy: a session whose
// requests keep being refused by the API (401) reaches the threshold and is blocked by
// apisessions itself, while another session is not, and the session record carries the score.
func TestRiskRule(t *testing.T) {
	t.Parallel()
	srv := startServer(t, `
parameters:
  - {name: query_token, in: request.query, key: token, group: true, hashed: true}
protection:
  rules:
    - name: risky
      match: {risk_at_least: 35}
      action: block
      block: {body: "too risky\n"}
`)
	up := startUpstream(t)
	inline := startFront(t, srv, up, envoy.ModeInline, nil)
	c := client{addr: "198.51.100.40:40000", ua: "risk-test/1.0"}
	var session string
	for i := range 4 {
		// An unknown token: the demo API answers 401, 10 points each.
		r := inline.do(t, c, "GET", "/api/items?token=guess", "")
		if r.status != 401 || up.headers(r.id) == nil {
			t.Fatalf("request %d: answer %d; want the API's 401 below the threshold", i, r.status)
		}
		session, _ = srv.record(t, r.id)["session"].(string)
	}
	r := inline.do(t, c, "GET", "/api/items?token=guess", "")
	if r.status != 403 || up.headers(r.id) != nil {
		t.Fatalf("after four 401s: answer %d, upstream saw it: %v; want 403 from the risk rule", r.status, up.headers(r.id) != nil)
	}
	if p := protection(srv.record(t, r.id)); p["action"] != "block" || p["rule"] != "risky" {
		t.Errorf("protection %v", p)
	}
	if r := inline.do(t, c, "GET", "/api/items?token=other", ""); r.status != 401 {
		t.Errorf("another session: answer %d, want the API's 401", r.status)
	}
	// The store scores the part too: four 401s (40) and the block (20).
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + srv.httpAddr + "/api/v1/sessions?min_risk=55")
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Sessions []struct {
				Session     string           `json:"session"`
				Risk        int              `json:"risk"`
				RiskReasons []map[string]any `json:"risk_reasons"`
			} `json:"sessions"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Sessions) == 1 && page.Sessions[0].Session == session {
			if rs := page.Sessions[0].RiskReasons; len(rs) != 2 || rs[0]["signal"] != "denied" || rs[1]["signal"] != "protection" {
				t.Errorf("the stored part's risk %d, reasons %v; want denied, then protection", page.Sessions[0].Risk, rs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store lists %+v at min_risk=55 after 30s, want the risky session %s alone", page.Sessions, session)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
