package sessions

import (
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// seedParams are the three grouping keys of the product's documented example, in its order.
var seedParams = []config.Parameter{
	{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true, Hashed: true},
	{Name: "query_token", In: config.InRequestQuery, Key: "token", Group: true, Hashed: true},
	{Name: "body_token", In: config.InRequestBody, Path: "$.token", Group: true, Hashed: true},
}

// TestSeedExample is the documented example literally: a token returned by a login response
// and later sent in a request body groups both requests into one session.
//
// The login request carries no identifier of its own, so with login stitching (the default)
// the token joins the session its request was in (the fallback's), and request 2 continues
// from the token's own session; without it, the session is the token's.
func TestSeedExample(t *testing.T) {
	t.Parallel()
	for _, login := range []bool{false, true} {
		cfg := testConfig(t, seedParams...)
		cfg.Sessions.Stitch.Login = login
		seedExample(t, cfg, login)
	}
}

func seedExample(t *testing.T, cfg *config.Config, login bool) {
	e, em, _ := newTestEngine(t, cfg)

	r1 := e.observe(withResponse(withJSONBody(exchange("POST", "/login"), `{"in":"bbb"}`), 200, `{"token":"aaa"}`))
	r2 := e.observe(withResponse(withJSONBody(exchange("POST", "/orders"), `{"in":"ccc","token":"aaa"}`), 200, `{"ok":true}`))

	if want := (record.Key{Source: "param", Name: "login_token"}); r1.Key != want {
		t.Errorf("request 1 key = %v, want %v (grouping key #1)", r1.Key, want)
	}
	if want := (record.Key{Source: "param", Name: "body_token"}); r2.Key != want {
		t.Errorf("request 2 key = %v, want %v (grouping key #3)", r2.Key, want)
	}
	if r1.Session != r2.Session {
		t.Errorf("requests 1 and 2 are in sessions %s and %s, want one session", r1.Session, r2.Session)
	}
	switch {
	case !login && r1.Session != wantID("aaa"):
		t.Errorf("session = %s, want HMAC of the value aaa = %s", r1.Session, wantID("aaa"))
	case login && r1.Session != wantFallbackID("ip=203.0.113.7"):
		t.Errorf("session = %s, want the fallback's session %s that the login joined", r1.Session, wantFallbackID("ip=203.0.113.7"))
	case login && (r2.ContinuedFrom == nil || r2.ContinuedFrom.Session != wantID("aaa") || r2.ContinuedFrom.Kind != StitchLogin || r1.Linked != 1):
		t.Errorf("request 2 continued from %+v, request 1 linked %d; want the token's own session by login, 1 link", r2.ContinuedFrom, r1.Linked)
	}
	if got := r2.Params["body_token"]; got != wantHashed("aaa") {
		t.Errorf("request 2 params[body_token] = %q, want %q", got, wantHashed("aaa"))
	}
	if r1.Part != r2.Part {
		t.Errorf("parts %s and %s differ, want one part", r1.Part, r2.Part)
	}
	em.take()
}

func TestGrouping(t *testing.T) {
	t.Parallel()
	bearerJWT := func(t *testing.T, claims map[string]any) string { return "Bearer " + jwt(t, claims) }
	tests := []struct {
		name    string
		params  []config.Parameter
		noBuilt bool
		// noRotation turns sessions.stitch.rotation off.
		noRotation bool
		fallback   []string
		x          func(t *testing.T) *traffic.Exchange
		wantKey    record.Key
		wantID     string
	}{
		{
			name:   "response-side key decides with the response, its value continuing the request's",
			params: seedParams,
			x: func(*testing.T) *traffic.Exchange {
				return withResponse(exchange("POST", "/login?token=q"), 200, `{"token":"r"}`)
			},
			wantKey: record.Key{Source: "param", Name: "login_token"}, wantID: wantID("q"),
		},
		{
			name:       "response-side key decides with the response, rotation off",
			params:     seedParams,
			noRotation: true,
			x: func(*testing.T) *traffic.Exchange {
				return withResponse(exchange("POST", "/login?token=q"), 200, `{"token":"r"}`)
			},
			wantKey: record.Key{Source: "param", Name: "login_token"}, wantID: wantID("r"),
		},
		{
			name:   "response-side key is skipped when the response never came",
			params: seedParams,
			x: func(*testing.T) *traffic.Exchange {
				x := exchange("POST", "/login?token=q")
				x.ResponseBody = []byte(`{"token":"r"}`) // bytes without ResponseSeen must not count
				return x
			},
			wantKey: record.Key{Source: "param", Name: "query_token"}, wantID: wantID("q"),
		},
		{
			name:   "file order: query before body",
			params: seedParams,
			x: func(*testing.T) *traffic.Exchange {
				return withJSONBody(exchange("POST", "/x?token=q"), `{"token":"b"}`)
			},
			wantKey: record.Key{Source: "param", Name: "query_token"}, wantID: wantID("q"),
		},
		{
			name:    "own keys before built-ins",
			params:  seedParams,
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/x?token=q", "cookie", "PHPSESSID=p") },
			wantKey: record.Key{Source: "param", Name: "query_token"}, wantID: wantID("q"),
		},
		{
			name:    "empty value does not work",
			params:  seedParams,
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/x?token=", "cookie", "PHPSESSID=p") },
			wantKey: record.Key{Source: "builtin", Name: "cookie:PHPSESSID"}, wantID: wantID("p"),
		},
		{
			name: "cookie order PHPSESSID first",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "cookie", "session=s; sid=d; connect.sid=c; ASP.NET_SessionId=a; JSESSIONID=j; PHPSESSID=p")
			},
			wantKey: record.Key{Source: "builtin", Name: "cookie:PHPSESSID"}, wantID: wantID("p"),
		},
		{
			name:    "cookie JSESSIONID",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/", "cookie", "session=s; JSESSIONID=j") },
			wantKey: record.Key{Source: "builtin", Name: "cookie:JSESSIONID"}, wantID: wantID("j"),
		},
		{
			name: "cookie ASP.NET_SessionId",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "cookie", "sid=d; ASP.NET_SessionId=a")
			},
			wantKey: record.Key{Source: "builtin", Name: "cookie:ASP.NET_SessionId"}, wantID: wantID("a"),
		},
		{
			name:    "cookie connect.sid",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/", "cookie", "sid=d; connect.sid=c") },
			wantKey: record.Key{Source: "builtin", Name: "cookie:connect.sid"}, wantID: wantID("c"),
		},
		{
			name:    "cookie sid",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/", "cookie", "session=s; sid=d") },
			wantKey: record.Key{Source: "builtin", Name: "cookie:sid"}, wantID: wantID("d"),
		},
		{
			name:    "cookie session",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/", "cookie", "other=o; session=s") },
			wantKey: record.Key{Source: "builtin", Name: "cookie:session"}, wantID: wantID("s"),
		},
		{
			name: "cookies before headers",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "session-id", "h", "cookie", "session=s")
			},
			wantKey: record.Key{Source: "builtin", Name: "cookie:session"}, wantID: wantID("s"),
		},
		{
			name: "header order session-id first",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-auth-token", "5", "x-session-token", "4", "mcp-session-id", "3", "x-session-id", "2", "session-id", "1")
			},
			wantKey: record.Key{Source: "builtin", Name: "header:session-id"}, wantID: wantID("1"),
		},
		{
			name: "header x-session-id",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-auth-token", "5", "x-session-id", "2")
			},
			wantKey: record.Key{Source: "builtin", Name: "header:x-session-id"}, wantID: wantID("2"),
		},
		{
			name: "header mcp-session-id",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-session-token", "4", "mcp-session-id", "3")
			},
			wantKey: record.Key{Source: "builtin", Name: "header:mcp-session-id"}, wantID: wantID("3"),
		},
		{
			name: "header x-session-token",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-auth-token", "5", "x-session-token", "4")
			},
			wantKey: record.Key{Source: "builtin", Name: "header:x-session-token"}, wantID: wantID("4"),
		},
		{
			name:    "header x-auth-token",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/", "x-auth-token", "5") },
			wantKey: record.Key{Source: "builtin", Name: "header:x-auth-token"}, wantID: wantID("5"),
		},
		{
			name: "headers before jwt",
			x: func(t *testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", bearerJWT(t, map[string]any{"sid": "js"}), "x-auth-token", "5")
			},
			wantKey: record.Key{Source: "builtin", Name: "header:x-auth-token"}, wantID: wantID("5"),
		},
		{
			name: "jwt sid before sub",
			x: func(t *testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", bearerJWT(t, map[string]any{"sub": "user-1", "sid": "js"}))
			},
			wantKey: record.Key{Source: "builtin", Name: "jwt:sid"}, wantID: wantID("js"),
		},
		{
			name: "jwt sub",
			x: func(t *testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", bearerJWT(t, map[string]any{"sub": "user-1"}))
			},
			wantKey: record.Key{Source: "builtin", Name: "jwt:sub"}, wantID: wantID("user-1"),
		},
		{
			name: "jwt numeric sub",
			x: func(t *testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", bearerJWT(t, map[string]any{"sub": 932}))
			},
			wantKey: record.Key{Source: "builtin", Name: "jwt:sub"}, wantID: wantID("932"),
		},
		{
			name: "jwt without sid or sub falls to the bearer token",
			x: func(t *testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", bearerJWT(t, map[string]any{"iss": "x"}))
			},
			wantKey: record.Key{Source: "builtin", Name: "bearer"},
			wantID:  "", // computed below from the token
		},
		{
			name: "opaque bearer token, scheme in any case",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", "bEaReR  opaque-123 ")
			},
			wantKey: record.Key{Source: "builtin", Name: "bearer"}, wantID: wantID("opaque-123"),
		},
		{
			name: "basic auth is not a bearer",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "authorization", "Basic dXNlcjpwYXNz", "user-agent", "ua")
			},
			wantKey: record.Key{Source: "fallback", Name: "ip+user_agent"}, wantID: wantFallbackID("ip=203.0.113.7\x00user_agent=ua"),
		},
		{
			name:    "built-ins off",
			noBuilt: true,
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "cookie", "PHPSESSID=p", "user-agent", "ua")
			},
			wantKey: record.Key{Source: "fallback", Name: "ip+user_agent"}, wantID: wantFallbackID("ip=203.0.113.7\x00user_agent=ua"),
		},
		{
			name: "fallback ip+user_agent+ja3",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "user-agent", "ua", "x-client-ja3", "E7D705A3286E19EA42F587B344EE6865")
			},
			wantKey: record.Key{Source: "fallback", Name: "ip+user_agent+ja3"},
			wantID:  wantFallbackID("ip=203.0.113.7\x00user_agent=ua\x00ja3=e7d705a3286e19ea42f587b344ee6865"),
		},
		{
			name: "fallback without ja3 degrades to ip+user_agent",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "user-agent", "ua", "x-client-ja3", "bogus")
			},
			wantKey: record.Key{Source: "fallback", Name: "ip+user_agent"}, wantID: wantFallbackID("ip=203.0.113.7\x00user_agent=ua"),
		},
		{
			name: "fallback without user agent degrades to ip+ja3",
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-client-ja3", "e7d705a3286e19ea42f587b344ee6865")
			},
			wantKey: record.Key{Source: "fallback", Name: "ip+ja3"},
			wantID:  wantFallbackID("ip=203.0.113.7\x00ja3=e7d705a3286e19ea42f587b344ee6865"),
		},
		{
			name:    "fallback nothing but ip",
			x:       func(*testing.T) *traffic.Exchange { return exchange("GET", "/") },
			wantKey: record.Key{Source: "fallback", Name: "ip"}, wantID: wantFallbackID("ip=203.0.113.7"),
		},
		{
			name: "fallback with nothing present is still deterministic",
			x: func(*testing.T) *traffic.Exchange {
				x := exchange("GET", "/")
				x.SourceAddress = ""
				return x
			},
			wantKey: record.Key{Source: "fallback", Name: "ip"}, wantID: wantFallbackID("ip="),
		},
		{
			name:     "fallback with ja4 configured",
			fallback: []string{"ja4", "ip"},
			x: func(*testing.T) *traffic.Exchange {
				return exchange("GET", "/", "x-client-ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1")
			},
			wantKey: record.Key{Source: "fallback", Name: "ja4+ip"},
			wantID:  wantFallbackID("ja4=t13d1516h2_8daaf6152771_e5627efa2ab1\x00ip=203.0.113.7"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, tc.params...)
			cfg.Sessions.BuiltinKeys = !tc.noBuilt
			cfg.Sessions.Stitch.Rotation = !tc.noRotation
			if tc.fallback != nil {
				cfg.Sessions.Fallback = tc.fallback
			}
			e, em, _ := newTestEngine(t, cfg)
			x := tc.x(t)
			want := tc.wantID
			if want == "" {
				auth, _ := x.RequestHeader("authorization")
				want = wantID(strings.TrimPrefix(auth, "Bearer "))
			}
			// Peek, before Observe changes any state, must say what Observe decides.
			ps, _, pk := e.Peek(x)
			rec := e.observe(x)
			if ps != rec.Session || pk != rec.Key {
				t.Errorf("%s: Peek = %s %v, want %s %v as Observe", tc.name, ps, pk, rec.Session, rec.Key)
			}
			if rec.Key != tc.wantKey {
				t.Errorf("%s: key = %v, want %v", tc.name, rec.Key, tc.wantKey)
			}
			if rec.Session != want {
				t.Errorf("%s: session = %s, want %s", tc.name, rec.Session, want)
			}
			// Peek sees the request side only; for requests without a response it must agree.
			if !x.ResponseSeen {
				s, _, k := e.Peek(x)
				if s != rec.Session || k != rec.Key {
					t.Errorf("%s: Peek = %s %v, want %s %v as Observe", tc.name, s, k, rec.Session, rec.Key)
				}
			}
			em.take()
		})
	}
}

// At the response Peek says what Observe will decide (the response-side key, whose value
// continues the query token's session) and changes nothing: no part, no record, no link.
func TestPeekAtTheResponseChangesNothing(t *testing.T) {
	t.Parallel()
	e, em, _ := newTestEngine(t, testConfig(t, seedParams...))
	x := withResponse(exchange("POST", "/login?token=q"), 200, `{"token":"r"}`)
	s, part, key := e.Peek(x)
	if s != wantID("q") || key.Name != "login_token" {
		t.Errorf("Peek = %s %v, want %s by login_token", s, key, wantID("q"))
	}
	if n := e.links.len(); n != 0 {
		t.Errorf("Peek left %d links, want none", n)
	}
	if part != "2026-11-22" {
		t.Errorf("Peek part = %q, want 2026-11-22", part)
	}
	if n := e.parts.len(); n != 0 {
		t.Errorf("Peek left %d live parts, want none", n)
	}
	if recs := em.take(); len(recs) != 0 {
		t.Errorf("Peek emitted %d records, want none", len(recs))
	}
}
