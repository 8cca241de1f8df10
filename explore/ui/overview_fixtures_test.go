package ui

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// demoDay is a day of traffic for the overview's screenshot (docs/overview.png): sessions
// that follow the hours of a working day, a burst of SQL injection against the search and of
// failed logins in the afternoon, and a checkout that fails for an hour in the evening.
func demoDay() []*record.Request {
	rng := rand.New(rand.NewPCG(7, 11))
	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	agents := []string{
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"MyShop/4.2 (iPhone; iOS 18.1)",
	}
	routes := []struct{ method, path, route string }{
		{"GET", "/api/v1/products", "/api/v1/products"},
		{"GET", "/api/v1/products/%d", "/api/v1/products/{id}"},
		{"POST", "/api/v1/cart/items", "/api/v1/cart/items"},
		{"GET", "/api/v1/search", "/api/v1/search"},
		{"GET", "/api/v1/orders/%d", "/api/v1/orders/{id}"},
		{"POST", "/api/v1/checkout", "/api/v1/checkout"},
	}
	var out []*record.Request
	// Each customer's session comes from an address of its own; the attacks from one.
	ipOf := func(session string) string {
		if strings.HasPrefix(session, "s_bad") {
			return "198.51.100.66"
		}
		n := 0
		for _, c := range session {
			n = (n*31 + int(c)) % 250
		}
		return fmt.Sprintf("203.0.113.%d", 1+n)
	}
	add := func(session string, at time.Time, method, path, route string, status int, user, ua string, attack []string) {
		r := &record.Request{
			Kind: record.KindRequest, Session: session, Part: "2026-11-22",
			RequestID: fmt.Sprintf("%s-%d", session, len(out)), Time: record.At(at), Method: method, Scheme: "https",
			Host: "shop.example.com", Path: path, Route: route, Status: status, DurationMS: float64(10 + rng.IntN(200)),
			ClientIP: ipOf(session), UserAgent: ua, User: user,
			Key: record.Key{Source: record.SourceParam, Name: "login_token"},
		}
		if attack != nil {
			r.Malicious = true
			r.Attack = &record.Attack{Source: "coraza", Types: attack, RuleIDs: []string{"942100"}}
		}
		out = append(out, r)
	}
	for i := range 260 {
		// Start times follow the day: few at night, most from 08:00 to 22:00.
		var hour float64
		for {
			hour = rng.Float64() * 24
			if rng.Float64() < 0.15+0.85*math.Max(0, math.Sin((hour-6)/16*math.Pi)) {
				break
			}
		}
		start := day.Add(time.Duration(hour * float64(time.Hour)))
		session := fmt.Sprintf("s_%020x", 0x5e5510000+i)
		user := fmt.Sprintf("customer%03d@example.com", rng.IntN(180))
		ua := agents[rng.IntN(len(agents))]
		at := start
		add(session, at, "POST", "/api/v1/auth/login", "/api/v1/auth/login", 200, user, ua, nil)
		for range 3 + rng.IntN(12) {
			at = at.Add(time.Duration(5+rng.IntN(90)) * time.Second)
			rt := routes[rng.IntN(len(routes))]
			path := rt.path
			if rt.path != rt.route {
				path = fmt.Sprintf(rt.path, 1000+rng.IntN(9000))
			}
			status := 200
			if rt.route == "/api/v1/checkout" && at.Hour() == 19 {
				status = 503
			} else if rng.IntN(40) == 0 {
				status = 404
			}
			if at.Before(day.Add(24 * time.Hour)) {
				add(session, at, rt.method, path, rt.route, status, user, ua, nil)
			}
		}
	}
	// The afternoon's attacks: an injection scan of the search, then a credential stuffing run.
	for i := range 3 {
		session := fmt.Sprintf("s_bad%017x", i)
		at := day.Add(14*time.Hour + time.Duration(i)*7*time.Minute)
		for j := range 40 {
			at = at.Add(time.Duration(2+rng.IntN(8)) * time.Second)
			if j%2 == 0 {
				add(session, at, "GET", "/api/v1/search", "/api/v1/search", 500, "", "sqlmap/1.8.11#stable (https://sqlmap.org)", []string{"sqli"})
			} else {
				add(session, at, "POST", "/api/v1/auth/login", "/api/v1/auth/login", 401, fmt.Sprintf("admin%d", j), "python-requests/2.32.3", []string{"credential_stuffing"})
			}
		}
	}
	return out
}
