package protect

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/protect/manual"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

type discard struct{}

func (discard) Emit(record.Record) {}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newEngine builds a protection engine over a real sessions engine for yaml (a whole
// configuration file).
func newEngine(t testing.TB, yaml string) (*Engine, *clock) {
	t.Helper()
	cfg, err := config.ParseAndValidate("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ck := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	se, err := sessions.New(cfg, sessions.Settings{Emitter: discard{}, HashKey: []byte(strings.Repeat("k", 32)), Now: ck.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(se.Close)
	return New(cfg.Protection, se, ck.now), ck
}

func exchange(method, path, ip string, headers ...string) *traffic.Exchange {
	x := &traffic.Exchange{Method: method, Host: "api.example.com", Path: path, SourceAddress: ip + ":5000"}
	for i := 0; i+1 < len(headers); i += 2 {
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: headers[i], Value: headers[i+1]})
	}
	return x
}

func decide(e *Engine, x *traffic.Exchange, enforce bool) (traffic.Decision, string) {
	var d traffic.Decision
	s, _, _ := e.Decide(x, enforce, true, &d)
	return d, s
}

const rulesYAML = `
parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: role, in: request.header, key: x-role, type: role}
protection:
  rules:
    - name: no-admin-delete
      match: {methods: [DELETE], roles: [guest], routes: ["/api/items/{id}"]}
      action: block
      block: {status: 451, body: "no", headers: {X-Why: policy}}
    - name: watch-net
      match: {client_ips: [198.51.100.0/24]}
      action: block
      dry_run: true
    - name: mark-fallback
      match: {keys: [fallback], client_ips: [198.51.100.0/24]}
      action: tag
    - name: per-session
      match: {keys: ["param:token"]}
      action: rate_limit
      rate_limit: {rate: 2/s}
`

func TestDecideRules(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, rulesYAML)

	d, _ := decide(e, exchange("DELETE", "/api/items/42?token=a", "192.0.2.1", "x-role", "guest"), true)
	if d.Status != 451 || d.Body != "no" || d.Verdict != (traffic.Verdict{Action: "block", Rule: "no-admin-delete"}) || len(d.Headers) != 1 || d.Headers[0].Name != "x-why" {
		t.Errorf("guest DELETE: %+v", d)
	}
	d, _ = decide(e, exchange("DELETE", "/api/items/42?token=a", "192.0.2.1", "x-role", "admin"), true)
	if d.Status != 0 || d.Verdict.Action != "" {
		t.Errorf("admin DELETE: %+v", d)
	}
	// The dry-run rule matches first and is recorded; the tag rule decides.
	d, _ = decide(e, exchange("GET", "/x", "198.51.100.7"), true)
	if d.Status != 0 || d.TagHeader != "x-apisessions-verdict" || d.Verdict != (traffic.Verdict{Action: "tag", Rule: "mark-fallback"}) {
		t.Errorf("tagged: %+v", d)
	}
	// A grouped request from that network is not a fallback: only the dry run shows.
	d, _ = decide(e, exchange("GET", "/x?token=b", "198.51.100.7"), true)
	if d.Status != 0 || d.TagHeader != "" || d.Verdict != (traffic.Verdict{Action: "block", Rule: "watch-net", DryRun: true}) {
		t.Errorf("dry run: %+v", d)
	}
	// Observability mode: the block is only recorded.
	d, _ = decide(e, exchange("DELETE", "/api/items/42?token=a", "192.0.2.1", "x-role", "guest"), false)
	if d.Status != 0 || d.Verdict != (traffic.Verdict{Action: "block", Rule: "no-admin-delete", DryRun: true}) {
		t.Errorf("observability: %+v", d)
	}
	st := e.Stats()
	want := map[string][2]uint64{"no-admin-delete": {1, 1}, "watch-net": {0, 2}, "mark-fallback": {1, 0}, "manual": {0, 0}}
	for _, r := range st.Rules {
		if w, ok := want[r.Rule]; ok && (r.Fired != w[0] || r.DryRun != w[1]) {
			t.Errorf("%s: fired %d dry %d, want %v", r.Rule, r.Fired, r.DryRun, w)
		}
	}
}

func TestRateLimitRecovers(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, rulesYAML)
	x := func() *traffic.Exchange { return exchange("GET", "/api/items?token=c", "192.0.2.9") }
	for i := range 2 {
		if d, _ := decide(e, x(), true); d.Status != 0 {
			t.Fatalf("request %d limited: %+v", i, d)
		}
	}
	d, _ := decide(e, x(), true)
	if d.Status != 429 || d.RetryAfter != 1 || d.Verdict.Rule != "per-session" {
		t.Fatalf("third request: %+v", d)
	}
	// Another session has its own bucket.
	if d, _ := decide(e, exchange("GET", "/api/items?token=other", "192.0.2.9"), true); d.Status != 0 {
		t.Errorf("other session limited: %+v", d)
	}
	ck.add(600 * time.Millisecond)
	if d, _ := decide(e, x(), true); d.Status != 0 {
		t.Errorf("after refill: %+v", d)
	}
	if d, _ := decide(e, x(), true); d.Status != 429 {
		t.Errorf("bucket empty again: %+v", d)
	}
}

func TestRateLimitBySessionRouteAndRetryAfter(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, `protection:
  rules:
    - name: slow
      action: rate_limit
      rate_limit: {rate: 1/m, by: session_route}
`)
	get := func(path string) traffic.Decision {
		d, _ := decide(e, exchange("GET", path, "192.0.2.1"), true)
		return d
	}
	if d := get("/a/1"); d.Status != 0 {
		t.Fatalf("%+v", d)
	}
	if d := get("/a/2"); d.Status != 429 || d.RetryAfter != 60 {
		t.Errorf("same route template: %+v", d)
	}
	if d := get("/b"); d.Status != 0 {
		t.Errorf("another route has its own bucket: %+v", d)
	}
}

func TestManualBlocks(t *testing.T) {
	t.Parallel()
	e, ck := newEngine(t, `parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: user, in: request.header, key: x-user, type: user}
`)
	_, session := decide(e, exchange("GET", "/?token=t1", "192.0.2.1"), true)
	if _, err := e.Block(manual.KindSession, session, time.Hour, "scraping", "ops"); err != nil {
		t.Fatal(err)
	}
	d, _ := decide(e, exchange("GET", "/other?token=t1", "192.0.2.2"), true)
	if d.Status != 403 || d.Verdict != (traffic.Verdict{Action: "block", Rule: RuleManualSession}) {
		t.Errorf("blocked session: %+v", d)
	}
	if d, _ := decide(e, exchange("GET", "/?token=t2", "192.0.2.1"), true); d.Status != 0 {
		t.Errorf("other session: %+v", d)
	}
	if _, err := e.Block(manual.KindUser, "mallory", time.Minute, "", "ops"); err != nil {
		t.Fatal(err)
	}
	if d, _ := decide(e, exchange("GET", "/?token=t3", "192.0.2.1", "x-user", "mallory"), true); d.Verdict.Rule != RuleManualUser || d.Status != 403 {
		t.Errorf("blocked user: %+v", d)
	}
	ck.add(2 * time.Minute)
	if d, _ := decide(e, exchange("GET", "/?token=t3", "192.0.2.1", "x-user", "mallory"), true); d.Status != 0 {
		t.Errorf("expired block: %+v", d)
	}
	if ok, err := e.Unblock(manual.KindSession, session, "ops2"); !ok || err != nil {
		t.Error("unblock found no block")
	}
	if d, _ := decide(e, exchange("GET", "/?token=t1", "192.0.2.1"), true); d.Status != 0 {
		t.Errorf("unblocked: %+v", d)
	}
	a := e.Audit(manual.KindSession, session)
	if len(a) != 2 || a[0].Action != "block" || a[0].By != "ops" || a[0].Reason != "scraping" || a[1].Action != "unblock" || a[1].By != "ops2" {
		t.Errorf("audit: %+v", a)
	}
	for _, bad := range []time.Duration{0, -time.Second, MaxBlockFor + time.Second} {
		if _, err := e.Block(manual.KindSession, session, bad, "", "ops"); err == nil {
			t.Errorf("duration %v accepted", bad)
		}
	}
}

func TestBoundedTables(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, `protection:
  max_buckets: 64
  max_blocks: 3
  rules:
    - {name: r, action: rate_limit, rate_limit: {rate: 1/h}}
`)
	for i := range 1000 {
		decide(e, exchange("GET", "/", "192.0.2.1", "user-agent", "ua-"+strings.Repeat("x", i%50)+string(rune('a'+i%26))), true)
	}
	st := e.Stats()
	if st.Buckets > 64 || st.BucketsEvicted == 0 {
		t.Errorf("buckets %d, evicted %d", st.Buckets, st.BucketsEvicted)
	}
	for i := range 3 {
		if _, err := e.Block(manual.KindSession, string(rune('a'+i)), time.Hour, "", "t"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Block(manual.KindSession, "d", time.Hour, "", "t"); err != manual.ErrTooManyBlocks {
		t.Errorf("fourth block: %v", err)
	}
}

func TestRateLimitByUserAndIP(t *testing.T) {
	t.Parallel()
	e, _ := newEngine(t, `parameters:
  - {name: token, in: request.query, key: token, group: true}
  - {name: user, in: request.header, key: x-user, type: user}
protection:
  rules:
    - {name: per-user, action: rate_limit, match: {routes: [/login]}, rate_limit: {rate: 1/m, by: user}}
    - {name: per-ip, action: rate_limit, match: {routes: [/search]}, rate_limit: {rate: 1/m, by: ip}}
`)
	status := func(path, token, ip, user string) int {
		hs := []string{}
		if user != "" {
			hs = append(hs, "x-user", user)
		}
		d, _ := decide(e, exchange("GET", path+"?token="+token, ip, hs...), true)
		return d.Status
	}
	// One user across two sessions shares a bucket; another user has their own; no user, no limit.
	if a, b, c := status("/login", "s1", "192.0.2.1", "mallory"), status("/login", "s2", "192.0.2.2", "mallory"), status("/login", "s3", "192.0.2.3", "alice"); a != 0 || b != 429 || c != 0 {
		t.Errorf("per user: %d %d %d, want 0 429 0", a, b, c)
	}
	if a, b := status("/login", "s4", "192.0.2.1", ""), status("/login", "s5", "192.0.2.1", ""); a != 0 || b != 0 {
		t.Errorf("without a user: %d %d, want no limit", a, b)
	}
	// One address across sessions shares a bucket.
	if a, b, c := status("/search", "s6", "198.51.100.1", ""), status("/search", "s7", "198.51.100.1", ""), status("/search", "s8", "198.51.100.2", ""); a != 0 || b != 429 || c != 0 {
		t.Errorf("per ip: %d %d %d, want 0 429 0", a, b, c)
	}
}

// A risk_at_least rule acts once the live part's score reaches the threshold, and lets the
// session go again as the points fade.
func TestRiskThreshold(t *testing.T) {
	e, ck := newEngine(t, `
parameters:
  - {name: token, in: request.query, key: token, group: true}
sessions:
  risk: {half_life: 10m}
protection:
  rules:
    - name: risky
      match: {risk_at_least: 30}
      action: block
`)
	req := func() *traffic.Exchange {
		x := exchange("GET", "/api/items?token=abc", "192.0.2.1")
		x.Start = ck.now()
		return x
	}
	if d, _ := decide(e, req(), true); d.Verdict.Action != "" {
		t.Fatalf("fresh session: %+v", d.Verdict)
	}
	for i := range 3 {
		x := req()
		if d, _ := decide(e, x, true); d.Verdict.Action != "" {
			t.Fatalf("request %d before the threshold: %+v", i, d.Verdict)
		}
		x.ResponseSeen, x.Status, x.End = true, 401, x.Start
		e.facts.Observe(x)
	}
	d, _ := decide(e, req(), true)
	if d.Verdict.Rule != "risky" || d.Status != 403 {
		t.Fatalf("three 401s (30 points): %+v status %d, want risky 403", d.Verdict, d.Status)
	}
	// Other sessions are not affected.
	if d, _ := decide(e, exchange("GET", "/api/items?token=other", "192.0.2.1"), true); d.Verdict.Action != "" {
		t.Fatalf("another session: %+v", d.Verdict)
	}
	ck.add(5 * time.Minute) // 30 → 21
	if d, _ := decide(e, req(), true); d.Verdict.Action != "" {
		t.Fatalf("after the points faded: %+v", d.Verdict)
	}
}
