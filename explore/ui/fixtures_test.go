package ui

import (
	"fmt"
	"strconv"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// xssUA is the User-Agent of the hostile fixture: if the UI ever parsed it as HTML, an img
// element would appear and its onerror would open a dialog.
const xssUA = `<img src=x onerror=alert(1)>`

// sharedJA4 is the TLS fingerprint bob's and the hostile client's requests share.
const sharedJA4 = "t13d1516h2_8daaf6152771_b186095e22b6"

func at(s string) record.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return record.At(t)
}

// Fixture ids, fixed so tests can address them. Their requests are recorded traffic as the
// engine emits it; sessionsFrom derives the session records.
const (
	aliceSession = "s_a11ce0000000000000a1"
	bobSession   = "s_b0b0000000000000000b"
	evilSession  = "s_e0110000000000000e01"
	fixturePart  = "2026-11-22"
)

func fixtureRequests() []*record.Request {
	tokenKey := record.Key{Source: record.SourceParam, Name: "login_token"}
	alice := func(id, tm, method, path, route string, status int, dur float64, out int64, flows ...string) *record.Request {
		return &record.Request{
			Kind: record.KindRequest, Session: aliceSession, Part: fixturePart, RequestID: id, Time: at(tm),
			Method: method, Scheme: "https", Host: "shop.example.com", Path: path, Route: route, Status: status,
			DurationMS: dur, RequestBytes: 120, ResponseBytes: out, ClientIP: "203.0.113.7",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0", Key: tokenKey, User: "alice", Role: "admin",
			Flows:  flows,
			Params: map[string]string{"login_token": "hmac:6f1c2a9e0b7d4c3f8a5e1d2c3b4a5968", "username": "alice"},
		}
	}
	evil := &record.Request{
		Kind: record.KindRequest, Session: evilSession, Part: fixturePart, RequestID: "req-evil-1",
		Time: at("2026-11-22T11:00:00.000Z"), Method: "GET", Scheme: "https", Host: "shop.example.com",
		Path: `/search"><svg onload=alert(3)>`, Route: "/search", Status: 500, DurationMS: 3.5, ResponseBytes: 10,
		ClientIP: "198.51.100.66", UserAgent: xssUA, JA4: sharedJA4,
		Key:       record.Key{Source: record.SourceFallback, Name: "ip+user_agent"},
		User:      `<script>alert(2)</script>`,
		Flows:     []string{`<b onmouseover=alert(4)>x</b>`},
		Params:    map[string]string{`<i>q</i>`: `' OR 1=1 --<img src=x onerror=alert(5)>`},
		Malicious: true,
		Attack: &record.Attack{Source: "waf", Types: []string{"sqli", `<u>xss</u>`}, RuleIDs: []string{"942100"},
			Headers: map[string]string{"user-agent": xssUA}, Body: `<script>alert(6)</script>`},
		Protection:    &record.Verdict{Action: "rate_limit", Rule: `<img src=x onerror=alert(7)>`, DryRun: true},
		ContinuedFrom: &record.Continued{Session: `s_<img src=x onerror=alert(7)>`, Kind: `<b>login</b>`},
		Linked:        1,
	}
	return []*record.Request{
		alice("req-a-1", "2026-11-22T09:00:00.100Z", "POST", "/api/login", "/api/login", 200, 41.2, 310, "auth"),
		alice("req-a-2", "2026-11-22T09:00:05.200Z", "GET", "/api/users/42", "/api/users/{id}", 200, 12.9, 1840, "acc_mgmt"),
		alice("req-a-3", "2026-11-22T09:01:10.300Z", "POST", "/api/orders", "/api/orders", 201, 88.4, 512, "billing"),
		alice("req-a-4", "2026-11-22T09:02:00.400Z", "GET", "/api/admin/users", "/api/admin/users", 403, 5.1, 64, "admin"),
		{
			Kind: record.KindRequest, Session: bobSession, Part: fixturePart, RequestID: "req-b-1",
			Time: at("2026-11-22T10:00:00.000Z"), Method: "GET", Scheme: "https", Host: "shop.example.com",
			Path: "/api/catalog", Route: "/api/catalog", Status: 200, DurationMS: 7, ResponseBytes: 9000,
			ClientIP: "192.0.2.10", UserAgent: "curl/8.5.0", JA4: sharedJA4,
			Key: record.Key{Source: record.SourceBuiltin, Name: "cookie:PHPSESSID"}, User: "bob", Role: "customer",
		},
		evil,
	}
}

// sessionsFrom builds each part's session record from its requests, as the engine would.
func sessionsFrom(reqs []*record.Request) []*record.Session {
	byPart := map[string]*record.Session{}
	var order []string
	for _, r := range reqs {
		id := r.Session + "/" + r.Part
		s, ok := byPart[id]
		if !ok {
			s = &record.Session{Kind: record.KindSession, Session: r.Session, Part: r.Part, FirstSeen: r.Time,
				Key: r.Key, Methods: map[string]int{}, Statuses: map[string]int{}, Flows: map[string]int{}}
			byPart[id] = s
			order = append(order, id)
		}
		s.LastSeen = r.Time
		s.Requests++
		s.User, s.Role = r.User, r.Role
		if !contains(s.IPs, r.ClientIP) {
			s.IPs = append(s.IPs, r.ClientIP)
		}
		if !contains(s.UserAgents, r.UserAgent) {
			s.UserAgents = append(s.UserAgents, r.UserAgent)
		}
		s.Methods[r.Method]++
		s.Statuses[strconv.Itoa(r.Status)]++
		for _, f := range r.Flows {
			s.Flows[f]++
		}
		if r.Malicious {
			s.Malicious++
		}
		s.BytesIn += r.RequestBytes
		s.BytesOut += r.ResponseBytes
	}
	out := make([]*record.Session, 0, len(order))
	for _, id := range order {
		out = append(out, byPart[id])
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// demoRequests are one busy, realistic session for the screenshot in docs/ui.png, then the
// other fixtures.
func demoRequests() []*record.Request {
	key := record.Key{Source: record.SourceParam, Name: "login_token"}
	base := time.Date(2026, 11, 22, 9, 14, 2, 117e6, time.UTC)
	type step struct {
		after            time.Duration
		method, path, rt string
		status           int
		ms               float64
		out              int64
		flows            []string
		attack           []string
	}
	steps := []step{
		{0, "POST", "/api/v1/auth/login", "/api/v1/auth/login", 200, 182.4, 412, []string{"auth"}, nil},
		{2 * time.Second, "GET", "/api/v1/users/me", "/api/v1/users/me", 200, 23.1, 1290, []string{"acc_mgmt"}, nil},
		{9 * time.Second, "GET", "/api/v1/products", "/api/v1/products", 200, 64.8, 48211, nil, nil},
		{31 * time.Second, "GET", "/api/v1/products/8812", "/api/v1/products/{id}", 200, 18.2, 3391, nil, nil},
		{55 * time.Second, "POST", "/api/v1/cart/items", "/api/v1/cart/items", 201, 41.7, 640, nil, nil},
		{80 * time.Second, "GET", "/api/v1/products", "/api/v1/products", 200, 1312.5, 48211, nil, nil},
		{104 * time.Second, "POST", "/api/v1/checkout", "/api/v1/checkout", 402, 221.9, 188, []string{"billing"}, nil},
		{131 * time.Second, "POST", "/api/v1/payment-methods", "/api/v1/payment-methods", 201, 356.0, 512, []string{"billing"}, nil},
		{149 * time.Second, "POST", "/api/v1/checkout", "/api/v1/checkout", 200, 298.3, 942, []string{"billing"}, nil},
		{190 * time.Second, "GET", "/api/v1/orders/55021", "/api/v1/orders/{id}", 200, 27.6, 2210, nil, nil},
		{232 * time.Second, "GET", "/api/v1/admin/users", "/api/v1/admin/users", 403, 4.2, 96, []string{"admin"}, nil},
		{240 * time.Second, "GET", "/api/v1/orders/55020", "/api/v1/orders/{id}", 404, 9.9, 74, nil, nil},
		{251 * time.Second, "GET", "/api/v1/orders", "/api/v1/orders", 500, 12.0, 131, nil, []string{"sqli"}},
		{290 * time.Second, "POST", "/api/v1/auth/logout", "/api/v1/auth/logout", 204, 11.3, 0, []string{"auth"}, nil},
	}
	var reqs []*record.Request
	for i, s := range steps {
		r := &record.Request{
			Kind: record.KindRequest, Session: "s_3f9c0a51b2d47e8816aa", Part: "2026-11-22",
			RequestID: fmt.Sprintf("7c1e4b2a-90d3-4f6e-a1b8-%012x", 0x3c9d20+i), Time: record.At(base.Add(s.after)),
			Method: s.method, Scheme: "https", Host: "shop.example.com", Path: s.path, Route: s.rt, Status: s.status,
			DurationMS: s.ms, RequestBytes: 180, ResponseBytes: s.out, ClientIP: "203.0.113.24",
			UserAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
			Key:       key, User: "maria.koch@example.com", Role: "customer", Flows: s.flows,
			Params: map[string]string{"login_token": "hmac:9b41c07d2e5af8136c0e4d7a92b1f5e3", "tenant": "eu-west"},
		}
		if s.attack != nil {
			r.Malicious = true
			r.Attack = &record.Attack{Source: "coraza", Types: s.attack, RuleIDs: []string{"942100"}}
			r.Params["q"] = "1' OR '1'='1"
		}
		reqs = append(reqs, r)
	}
	return append(reqs, fixtureRequests()...)
}
