package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// newStitchEngine starts an engine on the defaults (built-in keys, stitching on), with shared
// parts and links when c is set.
func newStitchEngine(t testing.TB, c *Client) (*sessions.Engine, *recorder) {
	t.Helper()
	cfg := config.Default()
	cfg.Sessions.LookupCacheMB = 1
	rec := &recorder{}
	st := sessions.Settings{Emitter: rec, HashKey: testKey,
		Now: func() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }}
	if c != nil {
		st.SharedParts, st.SharedLinks = c.Parts(), c.Links()
	}
	e, err := sessions.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, rec
}

// stitchStream is three clients behind one address and user agent: each visits anonymously,
// logs in (a session cookie), has it rotated twice and refreshes; the first login joins the
// anonymous requests, the others start their own sessions.
func stitchStream(base time.Time) []traffic.Exchange {
	var xs []traffic.Exchange
	at := base
	x := func(id, path string, reqH, respH []traffic.Header) {
		at = at.Add(time.Second)
		reqH = append(reqH, traffic.Header{Name: "user-agent", Value: "browser/1.0"})
		xs = append(xs, traffic.Exchange{RequestID: id, Start: at, End: at.Add(time.Millisecond), Method: "GET",
			Scheme: "https", Host: "app.example.com", Path: path, SourceAddress: "203.0.113.7:5000",
			RequestHeaders: reqH, ResponseHeaders: respH, ResponseSeen: true, Status: 200})
	}
	cookie := func(v string) []traffic.Header { return []traffic.Header{{Name: "cookie", Value: "PHPSESSID=" + v}} }
	set := func(v string) []traffic.Header {
		return []traffic.Header{{Name: "set-cookie", Value: "PHPSESSID=" + v + "; path=/"}}
	}
	for c := range 3 {
		val := func(n int) string { return fmt.Sprintf("c%dv%d-0f3c9b2d8e14a7c9b2d8e14a", c, n) }
		x(fmt.Sprintf("c%d-anon", c), "/", nil, nil)
		x(fmt.Sprintf("c%d-login", c), "/login", nil, set(val(0)))
		x(fmt.Sprintf("c%d-a", c), "/a", cookie(val(0)), set(val(1)))
		x(fmt.Sprintf("c%d-b", c), "/b", cookie(val(1)), set(val(2)))
		x(fmt.Sprintf("c%d-c", c), "/c", cookie(val(2)), nil)
		// A request alone carrying another client's value next to its own links nothing.
		if c > 0 {
			x(fmt.Sprintf("c%d-claim", c), "/x", []traffic.Header{{Name: "cookie", Value: "PHPSESSID=" + val(2) + "; JSESSIONID=c0v2-0f3c9b2d8e14a7c9b2d8e14a"}}, nil)
		}
	}
	return xs
}

func sessionsByRequest(t *testing.T, e *sessions.Engine, r *recorder) map[string]string {
	t.Helper()
	e.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]string{}
	for _, rec := range r.recs {
		if q, ok := rec.(*record.Request); ok {
			m[q.RequestID] = q.Session
		}
	}
	return m
}

// Links made on one replica are followed on the others: three replicas sharing Redis, taking
// the requests in turn, group them as one engine does.
func TestSharedLinksMatchOneEngine(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	base := time.Now().UTC().Add(-time.Hour)
	stream := stitchStream(base)
	local, lrec := newStitchEngine(t, nil)
	var replicas []*sessions.Engine
	var recs []*recorder
	for range 3 {
		c, _ := newTestClient(t, r, nil)
		e, rec := newStitchEngine(t, c)
		replicas, recs = append(replicas, e), append(recs, rec)
	}
	for i := range stream {
		lx, sx := stream[i], stream[i]
		local.Observe(&lx)
		replicas[i%3].Observe(&sx)
		replicas[i%3].Flush() // one request at a time: the order of the stream
	}
	want := sessionsByRequest(t, local, lrec)
	got := map[string]string{}
	for i, e := range replicas {
		for k, v := range sessionsByRequest(t, e, recs[i]) {
			got[k] = v
		}
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: session %s on the replicas, %s on one engine", id, got[id], w)
		}
	}
	// The grouping itself: client 0's visit is one session from its anonymous request on;
	// clients 1 and 2 log in after the fallback was joined, so each login starts its own.
	for c := range 3 {
		p := fmt.Sprintf("c%d-", c)
		for _, s := range []string{"a", "b", "c"} {
			if got[p+s] != got[p+"login"] {
				t.Errorf("%s%s: session %s; want the login's %s (rotation)", p, s, got[p+s], got[p+"login"])
			}
		}
		if (got[p+"anon"] == got[p+"login"]) != (c == 0) {
			t.Errorf("client %d: anonymous request in %s, login in %s", c, got[p+"anon"], got[p+"login"])
		}
		if c > 0 && got[p+"claim"] == got["c0-login"] {
			t.Errorf("client %d claimed client 0's session with a value of its own", c)
		}
	}
	for _, e := range replicas {
		if st := e.Stats(); st.LinksFailOpen != 0 {
			t.Errorf("%d requests stitched on local links; Redis was up", st.LinksFailOpen)
		}
	}
}

// With Redis down, a replica stitches on its own links and counts it.
func TestSharedLinksFailOpen(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, config.Redis{Address: "127.0.0.1:1", KeyPrefix: "x:", Timeout: config.Duration(50 * time.Millisecond), PoolSize: 2}, nil)
	e, rec := newStitchEngine(t, c)
	stream := stitchStream(time.Now().UTC().Add(-time.Hour))
	for i := range stream[:5] {
		e.Observe(&stream[i])
	}
	got := sessionsByRequest(t, e, rec)
	if got["c0-c"] != got["c0-anon"] || got["c0-login"] != got["c0-anon"] {
		t.Errorf("sessions %v; want client 0's visit in one session on local links", got)
	}
	if e.Stats().LinksFailOpen == 0 {
		t.Error("no request counted as stitched locally")
	}
}

// A visit begun while Redis is away is stitched on the replica's own links; once Redis is
// back, Redis knows no link for the rotated value, and the replica still follows its own, so
// the visit stays one session.
func TestSharedLinksAfterOutage(t *testing.T) {
	t.Parallel()
	c, px, _ := cutClient(t, 200*time.Millisecond, true)
	e, rec := newStitchEngine(t, c)
	stream := stitchStream(time.Now().UTC().Add(-time.Hour))
	px.Cut()
	for i := range stream[:3] { // anonymous, login, first rotation
		e.Observe(&stream[i])
	}
	e.Flush()
	px.Restore()
	if !c.probe() || !c.Up() {
		t.Fatal("the probe did not bring Redis back")
	}
	for i := range stream[3:5] { // second rotation, then the latest value
		e.Observe(&stream[3+i])
	}
	got := sessionsByRequest(t, e, rec)
	for _, id := range []string{"c0-login", "c0-a", "c0-b", "c0-c"} {
		if got[id] != got["c0-anon"] {
			t.Errorf("%s in session %s; want the visit's %s (links made in the outage followed after it); all %v stats %+v", id, got[id], got["c0-anon"], got, e.Stats())
		}
	}
	if e.Stats().LinksFailOpen == 0 {
		t.Error("no request counted as stitched locally during the outage")
	}
}

// Requests that issue nothing and carry a value no link continues read their link and write
// nothing: no link key appears, and each keeps the session of its own value.
func TestSharedLinksReadOnly(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	c, _ := newTestClient(t, r, nil)
	e, rec := newStitchEngine(t, c)
	at := time.Now().UTC().Add(-time.Hour)
	for i := range 20 {
		x := traffic.Exchange{RequestID: fmt.Sprintf("r%d", i), Start: at.Add(time.Duration(i) * time.Second), Method: "GET",
			Scheme: "https", Host: "api.example.com", Path: "/items", SourceAddress: "203.0.113.9:4000",
			RequestHeaders: []traffic.Header{{Name: "authorization", Value: fmt.Sprintf("Bearer tok-%d-5d1c0e8f9a7b", i%4)}},
			ResponseSeen:   true, Status: 200}
		e.Observe(&x)
	}
	got := sessionsByRequest(t, e, rec)
	for i := range 20 {
		if a, b := got[fmt.Sprintf("r%d", i)], got[fmt.Sprintf("r%d", i%4)]; a != b || a == "" {
			t.Errorf("r%d in session %q; want r%d's %q", i, a, i%4, b)
		}
	}
	keys, err := c.rdb.Keys(context.Background(), r.KeyPrefix+"link:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("link keys %v written by requests that issued nothing", keys)
	}
}

// One batch holds a rotation and the next request carrying the new value, and Redis has
// forgotten the script (SCRIPT FLUSH): the script runs after the pipeline's other commands,
// and the second request still follows the link the first made.
func TestSharedLinksOrderAfterScriptFlush(t *testing.T) {
	r := testRedis(t)
	c, _ := newTestClient(t, r, nil)
	ctx := context.Background()
	if err := c.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Add(-time.Hour)
	dayEnd := at.Truncate(24 * time.Hour).Add(24 * time.Hour).Unix()
	op := func(carried string, tm time.Time, issued ...string) sessions.LinkOp {
		o := sessions.LinkOp{Carried: carried, Rotation: true, Login: true, T: tm, DayEnd: dayEnd, Idle: 30 * time.Minute}
		for _, s := range issued {
			o.Issued = append(o.Issued, sessions.LinkIssued{Session: s})
		}
		return o
	}
	ops := []sessions.LinkOp{op("s_old", at, "s_new"), op("s_new", at.Add(time.Second))}
	c.Links().Stitch(ctx, ops)
	if !ops[0].OK || !ops[1].OK {
		t.Fatalf("answers unknown: %+v", ops)
	}
	if ops[0].Linked != 1 || ops[1].Session != "s_old" || ops[1].From != "s_new" || ops[1].Kind != sessions.StitchRotation {
		t.Errorf("rotation then follow: %+v / %+v; want s_new linked, then followed to s_old", ops[0], ops[1])
	}
}

// A first-party cookie that a response set and the client sends back is learned with Redis
// too, on the replica that saw it set: requests carrying it are grouped as one engine groups
// them.
func TestSharedLinksLearnedCookie(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	shared, srec := newStitchEngine(t, c)
	local, lrec := newStitchEngine(t, nil)
	at := time.Now().UTC().Add(-time.Hour)
	var xs []traffic.Exchange
	for i, cl := range []string{"203.0.113.10:1000", "203.0.113.10:1001", "198.51.100.4:2000"} {
		x := traffic.Exchange{RequestID: fmt.Sprintf("r%d", i), Start: at.Add(time.Duration(i) * time.Second), Method: "GET",
			Scheme: "https", Host: "shop.example.com", Path: "/", SourceAddress: cl, ResponseSeen: true, Status: 200,
			RequestHeaders: []traffic.Header{{Name: "user-agent", Value: "browser/2.0"}}}
		if i == 0 {
			x.ResponseHeaders = []traffic.Header{{Name: "set-cookie", Value: "visit=7f3a9c2e41d0b8a65e1f; Path=/"}}
		} else {
			// The same visitor again, then from another address: the cookie names the visit.
			x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "cookie", Value: "visit=7f3a9c2e41d0b8a65e1f"})
		}
		xs = append(xs, x)
	}
	for i := range xs {
		lx, sx := xs[i], xs[i]
		local.Observe(&lx)
		shared.Observe(&sx)
		shared.Flush()
	}
	want, got := sessionsByRequest(t, local, lrec), sessionsByRequest(t, shared, srec)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: session %s with Redis, %s on one engine", id, got[id], w)
		}
	}
	if got["r1"] != got["r2"] {
		t.Errorf("the learned cookie did not group the visit across addresses: %v", got)
	}
}
