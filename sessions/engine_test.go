package sessions

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestRequestRecord(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser},
		{Name: "email", In: config.InRequestBody, Path: "$.email", Hashed: true},
		{Name: "product_id", In: config.InResponseBody, Path: "$.product_id"},
		{Name: "role", In: config.InRequestHeader, Key: "x-role", Type: config.TypeRole, Hashed: true},
		{Name: "absent", In: config.InRequestQuery, Key: "nope"},
		{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true, Hashed: true},
	}
	e, em, _ := newTestEngine(t, testConfig(t, params...))
	token := jwt(t, map[string]any{"sub": "u1", "details": map[string]any{"username": "john-doe@company-001.com"}})
	x := exchange("POST", "/Users/42/orders?page=2",
		"authorization", "Bearer "+token,
		"x-role", "admin",
		"user-agent", "curl/8.0",
		"x-client-ja3", "e7d705a3286e19ea42f587b344ee6865",
		"x-client-ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1")
	x.Host = "API.Example.com:8443"
	x.RequestID = "rid-7"
	x.End = x.Start.Add(1234567 * time.Nanosecond)
	withJSONBody(x, `{"email":"a@b.example"}`)
	withResponse(x, 201, `{"product_id":77,"token":"tok"}`)

	got := e.observe(x)
	want := &record.Request{
		Kind: record.KindRequest,
		// The token the response issues continues the session of the bearer JWT's subject
		// (rotation): the response-side key decides, and its value is linked to u1's session.
		Session:       wantID("u1"),
		Part:          "2026-11-22",
		RequestID:     "rid-7",
		Time:          record.At(x.Start),
		Method:        "POST",
		Scheme:        "https",
		Host:          "api.example.com:8443",
		Path:          "/Users/42/orders",
		Query:         "page=2",
		Route:         "/Users/{id}/orders",
		Status:        201,
		DurationMS:    1.235,
		RequestBytes:  int64(len(`{"email":"a@b.example"}`)),
		ResponseBytes: int64(len(`{"product_id":77,"token":"tok"}`)),
		ClientIP:      "203.0.113.7",
		UserAgent:     "curl/8.0",
		JA3:           "e7d705a3286e19ea42f587b344ee6865",
		JA4:           "t13d1516h2_8daaf6152771_e5627efa2ab1",
		Key:           record.Key{Source: "param", Name: "login_token"},
		User:          "john-doe@company-001.com",
		Role:          wantHashed("admin"),
		Params: map[string]string{
			"username":    "john-doe@company-001.com",
			"email":       wantHashed("a@b.example"),
			"product_id":  "77",
			"role":        wantHashed("admin"),
			"login_token": wantHashed("tok"),
		},
		Linked: 1,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("request record (-want +got):\n%s", d)
	}
	recs := em.take()
	if len(recs) != 1 || recs[0] != record.Record(got) {
		t.Errorf("Observe emitted %d records, want exactly the returned request record", len(recs))
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("request record does not marshal: %v", err)
	}
}

func TestRequestRecordEdges(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "note", In: config.InRequestHeader, Key: "x-note"},
		{Name: "secret", In: config.InRequestHeader, Key: "x-secret", Hashed: true},
	}
	long := strings.Repeat("é", 700) // 1400 bytes
	tests := []struct {
		name  string
		x     func() *traffic.Exchange
		check func(t *testing.T, r *record.Request)
	}{
		{
			name: "user agent capped at 512 bytes on a rune boundary",
			x:    func() *traffic.Exchange { return exchange("GET", "/", "user-agent", "a"+long) },
			check: func(t *testing.T, r *record.Request) {
				if len(r.UserAgent) != 511 || !strings.HasPrefix(r.UserAgent, "aé") {
					t.Errorf("user agent has %d bytes, want 511 (512 cut back to a rune boundary)", len(r.UserAgent))
				}
			},
		},
		{
			name: "clear value capped at 1024 bytes, hash of the full value",
			x:    func() *traffic.Exchange { return exchange("GET", "/", "x-note", long, "x-secret", long) },
			check: func(t *testing.T, r *record.Request) {
				if len(r.Params["note"]) != 1024 {
					t.Errorf("clear param has %d bytes, want 1024", len(r.Params["note"]))
				}
				if r.Params["secret"] != wantHashed(long) {
					t.Errorf("hashed param %q is not the HMAC of the full value", r.Params["secret"])
				}
			},
		},
		{
			name: "no response: status 0, end before start gives duration 0",
			x: func() *traffic.Exchange {
				x := exchange("GET", "/")
				x.End = x.Start.Add(-time.Second)
				x.Partial = true
				return x
			},
			check: func(t *testing.T, r *record.Request) {
				if r.Status != 0 || r.DurationMS != 0 || !r.Partial {
					t.Errorf("status %d, duration %v, partial %v; want 0, 0, true", r.Status, r.DurationMS, r.Partial)
				}
			},
		},
		{
			name: "zero start takes the engine's clock",
			x: func() *traffic.Exchange {
				x := exchange("GET", "/")
				x.Start, x.End = time.Time{}, time.Time{}
				return x
			},
			check: func(t *testing.T, r *record.Request) {
				if !r.Time.Equal(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)) {
					t.Errorf("time = %v, want the injected clock", r.Time)
				}
			},
		},
		{
			name: "hostile path capped",
			x:    func() *traffic.Exchange { return exchange("GET", "/"+strings.Repeat("a/", 5000)) },
			check: func(t *testing.T, r *record.Request) {
				if len(r.Path) > maxPath || len(r.Route) > maxPath {
					t.Errorf("path %d bytes, route %d bytes; want them bounded", len(r.Path), len(r.Route))
				}
			},
		},
		{
			name: "binary garbage everywhere does not panic",
			x: func() *traffic.Exchange {
				x := exchange("\x00\xff", "\xff?\x00", "cookie", "\xff=\x00;;;=", "authorization", "Bearer \xff.\xff.\xff", "x-client-ja3", "\x00")
				x.SourceAddress = "\xff\xfe"
				x.RequestBody = []byte("{\xff")
				return x
			},
			check: func(t *testing.T, r *record.Request) {
				if r.Key.Name != "bearer" {
					t.Errorf("key = %v, want the bearer token", r.Key)
				}
			},
		},
	}
	e, em, _ := newTestEngine(t, testConfig(t, params...))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, e.observe(tc.x()))
		})
	}
	em.take()
}

func TestInScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		include, exclude []string
		host             string
		want             bool
	}{
		{name: "no lists: everything", host: "a.example.com", want: true},
		{name: "included by glob", include: []string{"*.example.com"}, host: "api.example.com:8443", want: true},
		{name: "not included", include: []string{"*.example.com"}, host: "example.org", want: false},
		{name: "case ignored", include: []string{"*.Example.com"}, host: "API.EXAMPLE.COM", want: true},
		{name: "excluded wins", include: []string{"*.example.com"}, exclude: []string{"admin.example.com"}, host: "admin.example.com:443", want: false},
		{name: "exclude only", exclude: []string{"health.*"}, host: "api.local", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Traffic.Hosts.Include, cfg.Traffic.Hosts.Exclude = tc.include, tc.exclude
			e, _, _ := newTestEngine(t, cfg)
			if got := e.InScope(tc.host); got != tc.want {
				t.Errorf("%s: InScope(%q) = %v, want %v", tc.name, tc.host, got, tc.want)
			}
		})
	}
}

func TestNeedsAndReload(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Parameter{Name: "q", In: config.InRequestQuery, Key: "q", Group: true})
	e, em, _ := newTestEngine(t, cfg)
	if n := e.Needs(); n.RequestBody || !n.ResponseBody {
		t.Errorf("Needs = %+v for a query parameter with built-in keys, want the response body only (token fields)", n)
	}
	if e.WantBody(traffic.Response, "text/html") || !e.WantBody(traffic.Response, "application/json; charset=utf-8") ||
		e.WantBody(traffic.Request, "application/json") {
		t.Error("WantBody: the built-in token fields must ask for JSON response bodies alone")
	}
	if got := e.MaxBodyBytes(); got != 65536 {
		t.Errorf("MaxBodyBytes = %d, want 65536", got)
	}
	if e.WantBody(traffic.Request, "application/json") {
		t.Error("WantBody(request, JSON) with no body parameter")
	}
	r1 := e.observe(exchange("GET", "/?q=v"))

	next := testConfig(t, seedParams...)
	next.Traffic.MaxBodyBytes = 1024
	if err := e.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if n := e.Needs(); !n.RequestBody || !n.ResponseBody {
		t.Errorf("Needs = %+v after adding body parameters, want both bodies", n)
	}
	if got := e.MaxBodyBytes(); got != 1024 {
		t.Errorf("MaxBodyBytes = %d after reload, want 1024", got)
	}
	for _, side := range []traffic.Side{traffic.Request, traffic.Response} {
		if !e.WantBody(side, "application/json; charset=utf-8") || !e.WantBody(side, "") || e.WantBody(side, "text/html") {
			t.Errorf("WantBody(%s): want JSON and untyped bodies, not HTML", side)
		}
	}

	bad := testConfig(t)
	bad.Sessions.DayBoundary = "Mars/Olympus_Mons"
	if err := e.Reload(bad); err == nil || !strings.Contains(err.Error(), "day_boundary") {
		t.Errorf("Reload of an unknown zone: error %v, want one naming sessions.day_boundary", err)
	}
	if got := e.MaxBodyBytes(); got != 1024 {
		t.Errorf("a rejected reload changed MaxBodyBytes to %d", got)
	}

	// Live state survives reloads: the same session continues its part.
	r2 := e.observe(exchange("GET", "/", "x-session-id", "other"))
	e.sweep(time.Date(2026, 11, 22, 12, 0, 1, 0, time.UTC))
	var sawFirst bool
	for _, s := range em.sessions() {
		if s.Session == r1.Session {
			sawFirst = true
		}
	}
	if !sawFirst || r2.Session == r1.Session {
		t.Error("the part created before the reload was lost")
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		key    []byte
		want   string
	}{
		{name: "unknown zone", mutate: func(c *config.Config) { c.Sessions.DayBoundary = "Nowhere/City" }, key: testKey, want: "day_boundary"},
		{name: "unknown fallback", mutate: func(c *config.Config) { c.Sessions.Fallback = []string{"ip", "cookie"} }, key: testKey, want: "fallback"},
		{name: "short key", mutate: func(*config.Config) {}, key: testKey[:MinHashKeyBytes-1], want: ErrHashKey.Error()},
		{name: "no key", mutate: func(*config.Config) {}, want: ErrHashKey.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			tc.mutate(cfg)
			_, err := New(cfg, Settings{HashKey: tc.key})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: New error = %v, want one mentioning %q", tc.name, err, tc.want)
			}
		})
	}
}

// TestSweeperTicks runs the real sweeper goroutine on a fake clock: a part that changed is
// snapshotted within a tick of the interval, and Close stops the goroutine.
func TestSweeperTicks(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	synctest.Test(t, func(t *testing.T) {
		em := &fakeEmitter{}
		e, err := New(cfg, Settings{Emitter: em, HashKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		x := exchange("GET", "/", "x-session-id", "tick")
		x.Start, x.End = time.Now(), time.Now()
		e.Observe(x)
		em.take()
		time.Sleep(1500 * time.Millisecond) // fake time inside the bubble
		synctest.Wait()
		ss := em.sessions()
		if len(ss) != 1 || ss[0].Final {
			t.Errorf("after one tick: %d session records, want one snapshot", len(ss))
		}
		e.Close()
		ss = em.sessions()
		if len(ss) != 1 || !ss[0].Final || ss[0].EndReason != record.EndShutdown {
			t.Errorf("Close emitted %+v, want one final shutdown record", ss)
		}
	})
}

// FuzzObserve feeds hostile request parts through the whole engine: it must not panic, and
// every record keeps its documented shape and caps.
func FuzzObserve(f *testing.F) {
	f.Add("GET", "/users/42?token=a", "PHPSESSID=x", "Bearer a.b.c", "1.1.1.1, 2.2.2.2", "curl/8", `{"token":"t"}`, `{"token":"r"}`)
	f.Add("\x00", "\xff", ";;=;", "Bearer", ",,,", "\xff\xfe", "{", "[")
	cfg := testConfig(f, seedParams...)
	cfg.Traffic.ClientIP = config.ClientIP{From: "x-forwarded-for", TrustedHops: 1}
	e, em, _ := newTestEngine(f, cfg)
	f.Fuzz(func(t *testing.T, method, path, cookie, auth, xff, ua, reqBody, respBody string) {
		x := exchange(method, path, "cookie", cookie, "authorization", auth, "x-forwarded-for", xff, "user-agent", ua)
		withResponse(withJSONBody(x, reqBody), 200, respBody)
		r := e.observe(x)
		if len(r.Session) != 22 || !strings.HasPrefix(r.Session, "s_") {
			t.Errorf("session id %q is not s_ + 20 hex", r.Session)
		}
		if len(r.UserAgent) > maxUserAgent || len(r.Path) > maxPath || len(r.Route) > maxPath || len(r.Method) > maxMethod {
			t.Errorf("a capped field exceeds its cap: ua %d, path %d, route %d, method %d", len(r.UserAgent), len(r.Path), len(r.Route), len(r.Method))
		}
		for name, v := range r.Params {
			if len(v) > maxParamValue {
				t.Errorf("param %s has %d bytes, over the cap", name, len(v))
			}
		}
		if r.Key.Source == "" || r.Key.Name == "" {
			t.Errorf("no grouping key recorded: %+v", r.Key)
		}
		em.take()
	})
}
