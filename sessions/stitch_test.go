package sessions

import (
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

const (
	sessA = "A0f3c9b2d8e14a7c9b2d8e14a7c9b2d8"
	sessB = "B7e21d4c9a3f08b7e21d4c9a3f08b7e2"
	sessC = "C5a90e3b7d1f62c5a90e3b7d1f62c5a9"
)

// later moves an exchange to a later time.
func later(x *traffic.Exchange, d time.Duration) *traffic.Exchange {
	x.Start = x.Start.Add(d)
	x.End = x.Start.Add(15 * time.Millisecond)
	return x
}

func TestStitchRotation(t *testing.T) {
	t.Parallel()
	e, em, _ := newTestEngine(t, testConfig(t))
	// The session cookie is rotated by each response (Rails, Laravel, session_regenerate_id).
	r1 := e.observe(withResponse(exchange("GET", "/a", "cookie", "PHPSESSID="+sessA), 200, "", "set-cookie", "PHPSESSID="+sessB+"; path=/"))
	r2 := e.observe(later(withResponse(exchange("GET", "/b", "cookie", "PHPSESSID="+sessB), 200, "", "set-cookie", "PHPSESSID="+sessC), time.Second))
	r3 := e.observe(later(exchange("GET", "/c", "cookie", "PHPSESSID="+sessC), 2*time.Second))
	if r1.Session != wantID(sessA) || r2.Session != r1.Session || r3.Session != r1.Session {
		t.Fatalf("sessions %s %s %s; want all %s (rotation)", r1.Session, r2.Session, r3.Session, wantID(sessA))
	}
	if r1.Linked != 1 || r2.Linked != 1 {
		t.Errorf("linked %d, %d; want 1 each", r1.Linked, r2.Linked)
	}
	// The chain resolved at link time: C continues A's session directly.
	if c := r3.ContinuedFrom; c == nil || c.Session != wantID(sessC) || c.Kind != StitchRotation {
		t.Errorf("request 3 continued from %+v; want C's own session by rotation", c)
	}
	if st := e.Stats(); st.LinksRotation != 2 || st.LinksLogin != 0 {
		t.Errorf("stats: %d rotation and %d login links; want 2 and 0", st.LinksRotation, st.LinksLogin)
	}
	em.take()
}

// Protection's facts name the session inline answers name: a request carrying a rotated value
// is the root session's for the rules too, with or without shared state.
func TestPeekFactsFollowLinks(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t))
	e.observe(withResponse(exchange("GET", "/a", "cookie", "PHPSESSID="+sessA), 200, "", "set-cookie", "PHPSESSID="+sessB+"; path=/"))
	x := later(exchange("GET", "/b", "cookie", "PHPSESSID="+sessB), time.Second)
	session, _, _ := e.Peek(x)
	var f, fl Facts
	e.PeekFacts(x, FactNeeds{}, &f)
	e.PeekFactsLocal(x, FactNeeds{}, &fl)
	if session != wantID(sessA) || f.Session != session || fl.Session != session {
		t.Errorf("Peek %s, PeekFacts %s, PeekFactsLocal %s; want all the root session %s", session, f.Session, fl.Session, wantID(sessA))
	}
}

func TestStitchRefreshToken(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t))
	login := withResponse(withJSONBody(exchange("POST", "/oauth/token"), `{"grant_type":"password"}`), 200,
		`{"access_token":"at-1-0f3c9b2d8e14a7c9","refresh_token":"rt-1-9b2d8e14a7c90f3c"}`)
	login.ResponseHeaders = append(login.ResponseHeaders, traffic.Header{Name: "content-type", Value: "application/json"})
	r1 := e.observe(login)
	r2 := e.observe(later(exchange("GET", "/api/x", "authorization", "Bearer at-1-0f3c9b2d8e14a7c9"), time.Second))
	refresh := later(exchange("POST", "/oauth/token", "content-type", "application/x-www-form-urlencoded"), 2*time.Second)
	refresh.RequestBody = []byte("grant_type=refresh_token&refresh_token=rt-1-9b2d8e14a7c90f3c")
	withResponse(refresh, 200, `{"access_token":"at-2-e14a7c90f3c9b2d8"}`, "content-type", "application/json")
	r3 := e.observe(refresh)
	r4 := e.observe(later(exchange("GET", "/api/y", "authorization", "Bearer at-2-e14a7c90f3c9b2d8"), 3*time.Second))
	for i, r := range []*record.Request{r2, r3, r4} {
		if r.Session != r1.Session {
			t.Errorf("request %d: session %s; want the login's %s", i+2, r.Session, r1.Session)
		}
	}
	if r3.Linked != 1 || r3.Key != keyRefresh {
		t.Errorf("refresh: linked %d by key %v; want 1 by %v", r3.Linked, r3.Key, keyRefresh)
	}
}

// A request alone that carries two values links nothing: claiming a victim's value next to
// one's own proves nothing.
func TestStitchRequestAloneLinksNothing(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t))
	victim := e.observe(exchange("GET", "/v", "cookie", "PHPSESSID="+sessA))
	e.observe(later(exchange("GET", "/x", "cookie", "PHPSESSID="+sessB+"; JSESSIONID="+sessA, "x-session-id", sessA), time.Second))
	attacker := e.observe(later(exchange("GET", "/y", "cookie", "PHPSESSID="+sessB), 2*time.Second))
	again := e.observe(later(exchange("GET", "/w", "cookie", "PHPSESSID="+sessA), 3*time.Second))
	if attacker.Session == victim.Session || again.Session != victim.Session || again.ContinuedFrom != nil {
		t.Errorf("victim %s, attacker %s, victim again %s (continued %+v); want two sessions, nothing linked",
			victim.Session, attacker.Session, again.Session, again.ContinuedFrom)
	}
	if st := e.Stats(); st.LinksRotation+st.LinksLogin != 0 {
		t.Errorf("%d links; want none", st.LinksRotation+st.LinksLogin)
	}
}

// A response to another session's request cannot link a value that is already someone's
// session, nor one already issued to another session.
func TestStitchResponseToAnotherSession(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t))
	victim := e.observe(exchange("GET", "/v", "cookie", "PHPSESSID="+sessA))
	// The attacker's request gets a response that sets the victim's value (a fixation, a
	// reflected cookie): the victim's session must not move.
	e.observe(later(withResponse(exchange("GET", "/x", "cookie", "PHPSESSID="+sessB), 200, "", "set-cookie", "PHPSESSID="+sessA), time.Second))
	v2 := e.observe(later(exchange("GET", "/w", "cookie", "PHPSESSID="+sessA), 2*time.Second))
	if v2.Session != victim.Session || v2.ContinuedFrom != nil {
		t.Errorf("victim's later request in %s (continued %+v); want its own %s", v2.Session, v2.ContinuedFrom, victim.Session)
	}
	// A value issued to two sessions is ambiguous: followed by neither.
	e.observe(later(withResponse(exchange("GET", "/p", "cookie", "PHPSESSID="+sessB), 200, "", "set-cookie", "PHPSESSID="+sessC), 3*time.Second))
	other := e.observe(later(withResponse(exchange("GET", "/q", "cookie", "JSESSIONID=D4c9a3f08b7e21d4c9a3f08b7e21d4c9"), 200, "", "set-cookie", "PHPSESSID="+sessC), 4*time.Second))
	c := e.observe(later(exchange("GET", "/r", "cookie", "PHPSESSID="+sessC), 5*time.Second))
	if c.Session != wantID(sessC) || c.ContinuedFrom != nil || other.Linked != 0 {
		t.Errorf("the value issued twice is in %s (continued %+v, other linked %d); want its own session %s",
			c.Session, c.ContinuedFrom, other.Linked, wantID(sessC))
	}
	if e.Stats().LinksRefused < 2 {
		t.Errorf("refused %d links; want at least 2", e.Stats().LinksRefused)
	}
}

// Three clients behind one address and user agent log in: only the first login joins the
// fallback session; the others start sessions of their own.
func TestStitchLoginOncePerFallback(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t))
	var logins []*record.Request
	for i, v := range []string{sessA, sessB, sessC} {
		logins = append(logins, e.observe(later(withResponse(exchange("POST", "/login"), 200, "", "set-cookie", "sid="+v), time.Duration(i)*time.Second)))
	}
	if logins[0].Session != wantFallbackID("ip=203.0.113.7") || logins[0].Linked != 1 {
		t.Errorf("first login in %s, linked %d; want the fallback's session, 1 link", logins[0].Session, logins[0].Linked)
	}
	if logins[1].Session != wantID(sessB) || logins[2].Session != wantID(sessC) {
		t.Errorf("later logins in %s and %s; want their cookies' sessions", logins[1].Session, logins[2].Session)
	}
	off := testConfig(t)
	off.Sessions.Stitch.Login = false
	e2, _, _ := newTestEngine(t, off)
	if r := e2.observe(withResponse(exchange("POST", "/login"), 200, "", "set-cookie", "sid="+sessA)); r.Session != wantID(sessA) || r.Linked != 0 {
		t.Errorf("login off: the login is in %s, linked %d; want its cookie's session, no link", r.Session, r.Linked)
	}
}

// Links expire with the part: a value used after the day ended is its own session again.
func TestStitchLinksExpireWithThePart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = 30 * 60 * 1e9
	e, _, _ := newTestEngine(t, cfg)
	e.observe(withResponse(exchange("GET", "/a", "cookie", "PHPSESSID="+sessA), 200, "", "set-cookie", "PHPSESSID="+sessB))
	if r := e.observe(later(exchange("GET", "/b", "cookie", "PHPSESSID="+sessB), time.Hour)); r.Session != wantID(sessB) {
		t.Errorf("after an idle hour the rotated value is in %s; want its own session %s", r.Session, wantID(sessB))
	}
}

// The table is bounded; evictions are counted.
func TestStitchTableBound(t *testing.T) {
	t.Parallel()
	lt, err := newLinkTable(32)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for i := range 200 {
		lt.put(wantID(string(rune('a'+i%26))+string(rune(i))), link{root: "s_r", kind: linkRotation, dayEnd: now.Unix() + 3600, lastUse: now.UnixNano()}, now, 0)
	}
	if n := lt.len(); n > 32 {
		t.Errorf("%d entries; want at most 32", n)
	}
	if lt.evictions.Load() == 0 {
		t.Error("no eviction counted")
	}
}

// A request body regroups only where the grouping rule lets a body value come before what
// decided at the request headers.
func TestBodyRegroups(t *testing.T) {
	t.Parallel()
	param := func(name, in string) config.Parameter {
		p := config.Parameter{Name: name, In: in, Key: name, Group: true}
		if in == config.InRequestBody {
			p.Key, p.Path = "", "$."+name
		}
		return p
	}
	key := func(name string) record.Key { return record.Key{Source: record.SourceParam, Name: name} }
	e, _, _ := newTestEngine(t, testConfig(t, param("hdr", config.InRequestHeader), param("tok", config.InRequestBody), param("qry", config.InRequestQuery)))
	cases := []struct {
		key  record.Key
		want bool
	}{
		{key("hdr"), false}, // decided before any body parameter
		{key("tok"), true},  // the body parameter itself: more of the body may change it
		{key("qry"), true},  // the body parameter comes first
		{keyBearer, true},   // a parameter of the body comes before every built-in
		{record.Key{Source: record.SourceFallback, Name: "ip+user_agent"}, true},
	}
	for _, c := range cases {
		if got := e.BodyRegroups(c.key); got != c.want {
			t.Errorf("configured parameters, key %v: %v; want %v", c.key, got, c.want)
		}
	}

	// Without body parameters only the refresh token of a body (the last built-in) can come
	// before what decided: a first-party cookie or the fallback.
	noBody, _, _ := newTestEngine(t, testConfig(t, param("hdr", config.InRequestHeader)))
	cases = []struct {
		key  record.Key
		want bool
	}{
		{key("hdr"), false},
		{keyBearer, false},
		{keyJWTSub, false},
		{cookieKey("PHPSESSID").key, false},
		{headerKey("x-session-id").key, false},
		{cookieKey("_shop_session").key, false}, // a built-in by its suffix
		{cookieKey("visitor").key, true},        // a first-party cookie a response set
		{record.Key{Source: record.SourceFallback, Name: "ip+user_agent"}, true},
	}
	for _, c := range cases {
		if got := noBody.BodyRegroups(c.key); got != c.want {
			t.Errorf("no body parameter, key %v: %v; want %v", c.key, got, c.want)
		}
	}
	cfg := testConfig(t, param("hdr", config.InRequestHeader))
	cfg.Sessions.BuiltinKeys = false
	off, _, _ := newTestEngine(t, cfg)
	if off.BodyRegroups(record.Key{Source: record.SourceFallback, Name: "ip"}) {
		t.Error("without built-in keys the body cannot regroup a fallback session")
	}
}
