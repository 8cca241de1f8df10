package sessions

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestHiddenParameters(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Parameter{Name: "object_id", In: config.InRequestQuery, Key: "mine"})
	cfg.MaxParameters = 1
	em := &fakeEmitter{}
	hidden := []config.Parameter{
		// Registered by a mitigation control: tracked for enumeration, never a key.
		{Name: "object_id", In: config.InRequestPath, Path: "/api/objects/{id}"},
		{Name: "bola_object", In: config.InRequestPath, Path: "/api/objects/{id}", Group: true},
		{Name: "abuse_device", In: config.InRequestHeader, Key: "x-device", Hashed: true},
	}
	e, err := newEngine(cfg, Settings{Emitter: em, HashKey: testKey, HiddenParameters: hidden}, false)
	if err != nil {
		t.Fatalf("New with hidden parameters beyond max_parameters: %v", err)
	}
	defer e.Close()
	check := func(when string) {
		t.Helper()
		r := e.observe(envoyExchange("GET", "api.example.com", "/api/objects/77?mine=1", "x-device", "dev-1", "user-agent", "ua"))
		want := map[string]string{"object_id": "1", "bola_object": "77", "abuse_device": wantHashed("dev-1")}
		for k, v := range want {
			if r.Params[k] != v {
				t.Errorf("%s: params[%s] = %q, want %q", when, k, r.Params[k], v)
			}
		}
		if r.Key.Source != record.SourceFallback {
			t.Errorf("%s: key %v; a hidden parameter must never group", when, r.Key)
		}
		if r2 := e.observe(envoyExchange("GET", "api.example.com", "/other", "user-agent", "ua")); len(r2.Params) != 0 {
			t.Errorf("%s: params %v for a request where no parameter is present, want none", when, r2.Params)
		}
	}
	check("at start")
	next := testConfig(t, config.Parameter{Name: "object_id", In: config.InRequestQuery, Key: "mine"})
	next.MaxParameters = 1
	if err := e.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	check("after reload")

	over := testConfig(t,
		config.Parameter{Name: "a", In: config.InRequestQuery, Key: "a"},
		config.Parameter{Name: "b", In: config.InRequestQuery, Key: "b"},
		config.Parameter{Name: "c", In: config.InRequestQuery, Key: "c", Hidden: true})
	over.MaxParameters = 1
	if err := e.Reload(over); err == nil || !strings.Contains(err.Error(), "max_parameters") {
		t.Errorf("two visible parameters over max_parameters 1: Reload error %v, want one naming max_parameters", err)
	}
	over.MaxParameters = 2
	if err := e.Reload(over); err != nil {
		t.Errorf("a hidden parameter in the file counted against max_parameters: %v", err)
	}
}

func TestUsersAndRoles(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "sid", In: config.InRequestHeader, Key: "x-sid", Group: true},
		{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser},
		{Name: "login_user", In: config.InRequestBody, Path: "$.username", Type: config.TypeUser, Hashed: true},
		{Name: "role", In: config.InResponseHeader, Key: "x-role", Type: config.TypeRole},
	}
	e, em, _ := newTestEngine(t, testConfig(t, params...))
	base := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	steps := []struct {
		name           string
		x              *traffic.Exchange
		wantUser, role string
	}{
		{
			name:     "login names a hashed user; the response names the role",
			x:        envoyResponse(buffered(envoyExchange("POST", "api.example.com", "/login", "x-sid", "S1"), "application/json", `{"username":"alice"}`, 1<<16), 200, "", 0, "x-role", "viewer"),
			wantUser: wantHashed("alice"), role: "viewer",
		},
		{
			name:     "a bearer JWT names the user in clear",
			x:        envoyExchange("GET", "api.example.com", "/me", "x-sid", "S1", "authorization", "Bearer "+jwt(t, map[string]any{"details": map[string]any{"username": "alice@example.com"}})),
			wantUser: "alice@example.com",
		},
		{
			name: "a later role wins",
			x:    envoyResponse(envoyExchange("POST", "api.example.com", "/sudo", "x-sid", "S1"), 200, "", 0, "x-role", "admin"),
			role: "admin",
		},
	}
	var session string
	for i, st := range steps {
		at(st.x, base.Add(time.Duration(i)*time.Minute))
		r := e.observe(st.x)
		session = r.Session
		if r.User != st.wantUser || r.Role != st.role {
			t.Errorf("%s: request user %q role %q, want %q %q", st.name, r.User, r.Role, st.wantUser, st.role)
		}
	}
	// A request that finishes late (it began before the others) does not override them.
	late := at(envoyResponse(envoyExchange("GET", "api.example.com", "/old", "x-sid", "S1"), 200, "", 0, "x-role", "guest"), base.Add(-time.Minute))
	e.Observe(late)
	em.take()
	e.sweep(base.Add(time.Hour))
	ss := em.sessions()
	if len(ss) != 1 || ss[0].Session != session {
		t.Fatalf("got %d session records, want one for the session", len(ss))
	}
	if ss[0].User != "alice@example.com" || ss[0].Role != "admin" {
		t.Errorf("session user %q role %q, want the latest: alice@example.com, admin", ss[0].User, ss[0].Role)
	}
}

// TestClaimedUsers: a login the server refuses names whoever the client typed; that name is
// kept as claimed and never becomes the session's user, unless sessions.users_from is any.
func TestClaimedUsers(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "sid", In: config.InRequestHeader, Key: "x-sid", Group: true},
		{Name: "login_user", In: config.InRequestBody, Path: "$.username", Type: config.TypeUser},
		{Name: "role", In: config.InResponseHeader, Key: "x-role", Type: config.TypeRole},
	}
	base := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	login := func(user string, status int, i int) *traffic.Exchange {
		x := withResponse(withJSONBody(exchange("POST", "/login", "x-sid", "S1"), `{"username":"`+user+`"}`), status, "", "x-role", "admin")
		return at(x, base.Add(time.Duration(i)*time.Minute))
	}
	for _, tc := range []struct {
		usersFrom          string
		wantUser, wantRole string
	}{
		{usersFrom: config.UsersFromSucceeded, wantUser: "alice", wantRole: "admin"},
		{usersFrom: config.UsersFromAny, wantUser: "admin' --", wantRole: "admin"},
	} {
		cfg := testConfig(t, params...)
		cfg.Sessions.UsersFrom = tc.usersFrom
		e, em, _ := newTestEngine(t, cfg)
		ok := e.observe(login("alice", 200, 0))
		refused := e.observe(login("admin' --", 403, 1))
		if ok.User != "alice" || ok.ClaimedUser != "" {
			t.Errorf("%s: the accepted login: user %q claimed %q; want alice, none", tc.usersFrom, ok.User, ok.ClaimedUser)
		}
		if tc.usersFrom == config.UsersFromSucceeded && (refused.User != "" || refused.Role != "" || refused.ClaimedUser != "admin' --" || refused.ClaimedRole != "admin") {
			t.Errorf("the refused login: user %q role %q claimed %q %q; want none, claimed admin' -- and admin", refused.User, refused.Role, refused.ClaimedUser, refused.ClaimedRole)
		}
		em.take()
		e.sweep(base.Add(time.Hour))
		ss := em.sessions()
		if len(ss) != 1 || ss[0].User != tc.wantUser || ss[0].Role != tc.wantRole {
			t.Errorf("%s: session records %+v; want one with user %q role %q", tc.usersFrom, ss, tc.wantUser, tc.wantRole)
		}
	}
}

// TestTimingAndSize feeds exchanges shaped like each of Envoy's body modes.
func TestTimingAndSize(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Parameter{Name: "tok", In: config.InRequestBody, Path: "$.t"})
	cfg.Traffic.MaxBodyBytes = 16
	e, _, _ := newTestEngine(t, cfg)
	tests := []struct {
		name             string
		x                func() *traffic.Exchange
		dur              float64
		reqBytes, respBy int64
		status           int
		partial          bool
	}{
		{
			name: "buffered request and response",
			x: func() *traffic.Exchange {
				return envoyResponse(buffered(envoyExchange("POST", "h", "/a"), "application/json", `{"t":"1"}`, 16), 200, `{"ok":1}`, 16)
			},
			dur: 20, reqBytes: 9, respBy: 8, status: 200,
		},
		{
			name: "streamed body beyond the cap: bytes counted, not kept",
			x: func() *traffic.Exchange {
				x := envoyResponse(buffered(envoyExchange("POST", "h", "/a"), "application/json", strings.Repeat("x", 5000), 16), 200, strings.Repeat("y", 70000), 16)
				x.End = x.Start.Add(1500 * time.Millisecond)
				return x
			},
			dur: 1500, reqBytes: 5000, respBy: 70000, status: 200,
		},
		{
			name: "chunked response without content-length: the server counted the bytes",
			x: func() *traffic.Exchange {
				x := envoyResponse(envoyExchange("GET", "h", "/stream"), 200, "", 0, "transfer-encoding", "chunked")
				x.ResponseBytes = 123456
				x.End = x.Start.Add(2 * time.Second)
				return x
			},
			dur: 2000, respBy: 123456, status: 200,
		},
		{
			name: "body-less GET and 204",
			x:    func() *traffic.Exchange { return envoyResponse(envoyExchange("GET", "h", "/ping"), 204, "", 0) },
			dur:  20, status: 204,
		},
		{
			name: "held body larger than the count (replayed traffic) is not under-reported",
			x: func() *traffic.Exchange {
				x := envoyExchange("POST", "h", "/a")
				x.RequestBody = []byte("0123456789")
				return x
			},
			dur: 20, reqBytes: 10,
		},
		{
			name: "stream reset before the response",
			x: func() *traffic.Exchange {
				x := envoyExchange("POST", "h", "/a")
				x.Partial, x.End = true, x.Start.Add(5*time.Millisecond)
				return x
			},
			dur: 5, partial: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.observe(tc.x())
			if r.DurationMS != tc.dur || r.RequestBytes != tc.reqBytes || r.ResponseBytes != tc.respBy || r.Status != tc.status || r.Partial != tc.partial {
				t.Errorf("%s: duration %v, bytes %d/%d, status %d, partial %v; want %v, %d/%d, %d, %v",
					tc.name, r.DurationMS, r.RequestBytes, r.ResponseBytes, r.Status, r.Partial, tc.dur, tc.reqBytes, tc.respBy, tc.status, tc.partial)
			}
		})
	}
}

func TestObserveOutOfScope(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Traffic.Hosts.Include = []string{"*.example.com"}
	cfg.Traffic.Hosts.Exclude = []string{"health.example.com"}
	e, em, _ := newTestEngine(t, cfg)
	for _, host := range []string{"example.org", "health.example.com:443", "HEALTH.example.com"} {
		if r := e.observe(envoyExchange("GET", host, "/")); r != nil {
			t.Errorf("Observe for out-of-scope host %s returned a record", host)
		}
	}
	if recs := em.take(); len(recs) != 0 {
		t.Errorf("out-of-scope requests emitted %d records, want none", len(recs))
	}
	if e.observe(envoyExchange("GET", "API.example.com:8443", "/")) == nil {
		t.Error("an in-scope host produced no record")
	}
	if st := e.Stats(); st.OutOfScope != 3 || st.Observed != 1 {
		t.Errorf("stats %+v, want 3 out of scope and 1 observed", st)
	}
}

func BenchmarkInScope(b *testing.B) {
	cfg := testConfig(b)
	cfg.Traffic.Hosts.Include = []string{"*.example.com", "api.example.org"}
	cfg.Traffic.Hosts.Exclude = []string{"health.example.com"}
	e, _, _ := newTestEngine(b, cfg)
	b.ReportAllocs()
	for b.Loop() {
		e.InScope("api.example.com:8443")
	}
}

// TestSessionRecordsRebuild drives traffic over several sessions, days and idle gaps with the
// sweeper's clock, and rebuilds every part from the session records alone: the latest record
// of each part must agree with the request records of that part, and every part must end
// with a final record.
func TestSessionRecordsRebuild(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
	cfg.Attacks.Metadata = []config.AttackMetadata{{Namespace: "waf", Key: "bad"}}
	e, em, _ := newTestEngine(t, cfg)
	base := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	var reqs []*record.Request
	var all []record.Record
	paths := []string{"/api/login", "/api/v1/chat/completions", "/admin/users", "/api/orders/1"}
	methods := []string{"POST", "POST", "GET", "GET"}
	for i := range 240 {
		now := base.Add(time.Duration(i) * 37 * time.Second)
		if i >= 120 && i < 130 {
			continue // a gap shorter than idle_timeout
		}
		sid := fmt.Sprintf("S%d", i%5)
		if i > 200 && i%5 == 0 {
			now = now.Add(time.Hour) // one session comes back after an idle gap
		}
		x := at(envoyResponse(envoyExchange(methods[i%4], "api.example.com", paths[i%4], "x-session-id", sid), 200+i%2, "", 0), now)
		if i%7 == 0 {
			x.Metadata = map[string]map[string]any{"waf": {"bad": true}}
		}
		reqs = append(reqs, e.observe(x))
		e.sweep(now)
		all = append(all, em.take()...)
	}
	e.Close()
	all = append(all, em.take()...)

	type id struct{ s, p string }
	latest := map[id]*record.Session{}
	for _, r := range all {
		if s, ok := r.(*record.Session); ok {
			k := id{s.Session, s.Part}
			if prev := latest[k]; prev != nil && prev.Final {
				t.Errorf("part %v has a record after its final one", k)
			}
			latest[k] = s
		}
	}
	want := map[id]*record.Session{}
	for _, r := range reqs {
		k := id{r.Session, r.Part}
		w := want[k]
		if w == nil {
			w = &record.Session{Methods: map[string]int{}, Flows: map[string]int{}}
			want[k] = w
		}
		w.Requests++
		w.Methods[r.Method]++
		if r.Malicious {
			w.Malicious++
		}
		for _, f := range r.Flows {
			w.Flows[f]++
		}
	}
	if len(latest) != len(want) {
		t.Errorf("session records describe %d parts, request records %d", len(latest), len(want))
	}
	parts := 0
	for k, w := range want {
		got := latest[k]
		if got == nil {
			t.Errorf("part %v has requests but no session record", k)
			continue
		}
		parts++
		if !got.Final || got.Requests != w.Requests || got.Malicious != w.Malicious || !mapsEqual(got.Methods, w.Methods) || !mapsEqual(got.Flows, w.Flows) {
			t.Errorf("part %v: latest record final %v, %d requests (%d malicious), methods %v, flows %v; request records say %d (%d), %v, %v",
				k, got.Final, got.Requests, got.Malicious, got.Methods, got.Flows, w.Requests, w.Malicious, w.Methods, w.Flows)
		}
	}
	if parts < 10 {
		t.Errorf("only %d parts: the traffic should cross a day and an idle gap", parts)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRouteTableBounded(t *testing.T) {
	t.Parallel()
	rt := newRouteTable()
	for i := range maxRoutesPerHost {
		if got := rt.bound("a.example.com", fmt.Sprintf("/api/v1/r%c%c%c", 'a'+i%26, 'a'+i/26%26, 'a'+i/676)); strings.Contains(got, restPlaceholder) {
			t.Fatalf("route %d collapsed before the table was full", i)
		}
	}
	tests := []struct{ name, route, want string }{
		{name: "known route stays", route: "/api/v1/raaa", want: "/api/v1/raaa"},
		{name: "new route collapses past two segments", route: "/api/v1/zzz/x", want: "/api/v1/{...}"},
		{name: "short new route counts as its own collapsed form", route: "/zz", want: "/zz"},
	}
	for _, tc := range tests {
		if got := rt.bound("a.example.com", tc.route); got != tc.want {
			t.Errorf("%s: bound(%q) = %q, want %q", tc.name, tc.route, got, tc.want)
		}
	}
	for i := range maxCollapsedPerHost {
		rt.bound("a.example.com", fmt.Sprintf("/made/up%d/x", i))
	}
	if got := rt.bound("a.example.com", "/another/new/route"); got != "/{...}" {
		t.Errorf("once collapsed forms are full too: %q, want /{...}", got)
	}
	if got := rt.bound("b.example.com", "/api/v1/zzz/x"); got != "/api/v1/zzz/x" {
		t.Errorf("another host has its own table: %q", got)
	}
	distinct := map[string]bool{}
	for i := range 5000 {
		distinct[rt.bound("a.example.com", fmt.Sprintf("/%d-%d/x/y", i, i*7))] = true
	}
	if len(distinct) > maxCollapsedPerHost+1 {
		t.Errorf("5000 made-up routes produced %d distinct routes", len(distinct))
	}
}

func TestRecordFlowsAndRoute(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Parameter{Name: "user_seg", In: config.InRequestPath, Path: "/u/{name}/**", Hashed: true})
	cfg.BusinessFlows.Rules = []config.FlowRule{{Flow: "billing", Path: "/u/*/wallet"}}
	e, _, _ := newTestEngine(t, cfg)
	r := e.observe(envoyExchange("POST", "api.example.com", "/u/johndoe/wallet?x=1"))
	if !slices.Equal(r.Flows, []string{"billing"}) {
		t.Errorf("flows %v, want [billing]", r.Flows)
	}
	if r.Path != "/u/"+wantHashed("johndoe")+"/wallet" || r.Route != "/u/{id}/wallet" {
		t.Errorf("path %q route %q: a hashed path capture must be hashed in path and templated in route", r.Path, r.Route)
	}
	r = e.observe(envoyExchange("POST", "api.example.com", "/v1/chat/completions"))
	if !slices.Equal(r.Flows, []string{"ai_llm"}) {
		t.Errorf("flows %v, want the built-in ai_llm", r.Flows)
	}
}
