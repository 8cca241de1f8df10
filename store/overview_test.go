package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestOverview checks every part of the overview against a small store on both drivers: the
// period is [base, base+1h), with requests before, inside, at its end and after it.
func TestOverview(t *testing.T) {
	t.Parallel()
	mal := func(r *record.Request) {
		r.Malicious = true
		r.Attack = &record.Attack{Source: "header", Types: []string{"sqli"}}
	}
	status := func(n int) func(*record.Request) { return func(r *record.Request) { r.Status = n } }
	route := func(rt string) func(*record.Request) {
		return func(r *record.Request) { r.Route, r.Path = rt, rt }
	}
	user := func(u string) func(*record.Request) { return func(r *record.Request) { r.User = u } }
	agent := func(ua string) func(*record.Request) { return func(r *record.Request) { r.UserAgent = ua } }
	recs := []record.Record{
		// alice was seen before the period: not new, nor is her user agent.
		req("s_a", "2026-11-22", -2*time.Hour, user("alice")),
		req("s_a", "2026-11-22", 5*time.Minute, user("alice"), route("/api/search"), mal),
		req("s_a", "2026-11-22", 5*time.Minute+time.Second, user("alice"), route("/api/search"), mal),
		req("s_a", "2026-11-22", 6*time.Minute, user("alice"), route("/api/search"), mal),
		req("s_a", "2026-11-22", 7*time.Minute, user("alice"), status(500)),
		// bob is new at 10:10, with a new user agent; his session has a 4xx, not an error.
		req("s_b", "2026-11-22", 10*time.Minute, user("bob"), agent("NewAgent/1.0"), route("/api/login"), mal),
		req("s_b", "2026-11-22", 11*time.Minute, user("bob"), agent("NewAgent/1.0"), route("/api/login"), status(503)),
		req("s_b", "2026-11-22", 12*time.Minute, user("bob"), agent("NewAgent/1.0"), route("/api/login"), status(503)),
		req("s_b", "2026-11-22", 13*time.Minute, user("bob"), agent("NewAgent/1.0"), route("/api/login"), status(404)),
		// erin logs in inside a part that began before the period: she is new too.
		req("s_e", "2026-11-22", -30*time.Minute),
		req("s_e", "2026-11-22", 20*time.Minute, user("erin")),
		// no route: counted under the path; a status 600 is no error.
		req("s_c", "2026-11-22", 30*time.Minute, route(""), func(r *record.Request) { r.Path = "/raw/x" }, status(502)),
		req("s_c", "2026-11-22", 31*time.Minute, status(600)),
		// a part across the whole period without a request in it: not one of its sessions.
		req("s_f", "2026-11-22", -10*time.Minute),
		req("s_f", "2026-11-22", 70*time.Minute),
		// at the end of the period and after it: outside.
		req("s_d", "2026-11-22", time.Hour, user("carol"), agent("Late/1.0"), mal),
		req("s_d", "2026-11-22", 2*time.Hour, user("carol"), mal),
	}
	forEachDriver(t, func(t *testing.T, s *Store) {
		write(t, s, recs...)
		o, err := s.Overview(context.Background(), OverviewQuery{From: base, To: base.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if o.BucketSeconds != 60 || len(o.Buckets) != 60 || !o.Buckets[0].Start.Equal(base) {
			t.Fatalf("buckets: %d s × %d from %s; want 60 s × 60 from %s", o.BucketSeconds, len(o.Buckets), o.Buckets[0].Start, base)
		}
		want := OverviewTotals{Requests: 11, Sessions: 4, Malicious: 4, Errors: 4}
		if o.Totals != want {
			t.Errorf("totals = %+v; want %+v", o.Totals, want)
		}
		at := func(m int) OverviewBucket { return o.Buckets[m] }
		if b := at(5); b.Requests != 2 || b.Sessions != 1 || b.Malicious != 2 {
			t.Errorf("bucket 10:05 = %+v; want 2 malicious requests of one part", b)
		}
		if b := at(11); b.Requests != 1 || b.Errors != 1 || b.Malicious != 0 {
			t.Errorf("bucket 10:11 = %+v; want one error", b)
		}
		if b := at(59); b.Requests != 0 {
			t.Errorf("bucket 10:59 = %+v; want empty (10:00+1h is outside)", b)
		}
		sum := OverviewTotals{}
		for _, b := range o.Buckets {
			sum.Requests += b.Requests
			sum.Malicious += b.Malicious
			sum.Errors += b.Errors
		}
		if sum.Requests != want.Requests || sum.Malicious != want.Malicious || sum.Errors != want.Errors {
			t.Errorf("buckets sum to %+v; want the totals %+v", sum, want)
		}
		const host = "shop.example.com"
		if diff := cmp.Diff([]RouteCount{
			{Host: host, Route: "/api/search", Malicious: 3},
			{Host: host, Route: "/api/login", Malicious: 1, Errors: 2},
		}, o.RoutesByMalicious); diff != "" {
			t.Errorf("routes by malicious (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]RouteCount{
			{Host: host, Route: "/api/login", Malicious: 1, Errors: 2},
			{Host: host, Route: "/api/items", Errors: 1},
			{Host: host, Route: "/raw/x", IsPath: true, Errors: 1},
		}, o.RoutesByErrors); diff != "" {
			t.Errorf("routes by errors (-want +got):\n%s", diff)
		}
		if o.SessionsBy != ByMalicious || len(o.TopSessions) != 2 ||
			o.TopSessions[0].Session != "s_a" || o.TopSessions[0].Malicious != 3 || o.TopSessions[0].Errors != 1 ||
			o.TopSessions[0].User != "alice" || o.TopSessions[1].Session != "s_b" || o.TopSessions[1].Malicious != 1 {
			t.Errorf("top sessions = %+v; want s_a (3 malicious, 1 error), then s_b", o.TopSessions)
		}
		if diff := cmp.Diff(FirstSeenList{Total: 2, Items: []FirstSeen{
			{Kind: "user", Value: "erin", First: base.Add(20 * time.Minute)},
			{Kind: "user", Value: "bob", First: base.Add(10 * time.Minute)},
		}}, o.NewUsers); diff != "" {
			t.Errorf("new users (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(FirstSeenList{Total: 1, Items: []FirstSeen{
			{Kind: "user_agent", Value: "NewAgent/1.0", First: base.Add(10 * time.Minute)},
		}}, o.NewFingerprints); diff != "" {
			t.Errorf("new fingerprints (-want +got):\n%s", diff)
		}

		// The period before: alice and test/1.0 are new there, and no attack.
		o, err = s.Overview(context.Background(), OverviewQuery{From: base.Add(-3 * time.Hour), To: base})
		if err != nil {
			t.Fatal(err)
		}
		if o.Totals.Requests != 3 || o.Totals.Sessions != 3 || o.NewUsers.Total != 1 || o.NewUsers.Items[0].Value != "alice" ||
			o.NewFingerprints.Total != 1 || o.NewFingerprints.Items[0].Value != "test/1.0" ||
			len(o.RoutesByMalicious) != 0 || len(o.TopSessions) != 0 {
			t.Errorf("overview before = %+v; want 3 requests of 3 parts, alice and test/1.0 new, no attack", o)
		}
	})
}

// TestOverviewByRisk checks sessions_by=risk on both drivers: the parts with a request in the
// period and a risk score, riskiest first, with their period's counts; parts without a request
// in the period, or without risk, are left out.
func TestOverviewByRisk(t *testing.T) {
	t.Parallel()
	mal := func(r *record.Request) {
		r.Malicious = true
		r.Attack = &record.Attack{Source: "header", Types: []string{"sqli"}}
	}
	status := func(n int) func(*record.Request) { return func(r *record.Request) { r.Status = n } }
	user := func(u string) func(*record.Request) { return func(r *record.Request) { r.User = u } }
	recs := []record.Record{
		// s_hi: a malicious request and two refusals within a minute: 40 + 10 + 10.
		req("s_hi", "2026-11-22", 5*time.Minute, user("mallory"), mal),
		req("s_hi", "2026-11-22", 5*time.Minute+10*time.Second, user("mallory"), status(401)),
		req("s_hi", "2026-11-22", 5*time.Minute+20*time.Second, user("mallory"), status(403)),
		req("s_lo", "2026-11-22", 10*time.Minute, status(403)),
		req("s_lo", "2026-11-22", 11*time.Minute, status(500)),
		// s_lo: one refusal, faded a little at its server error (not a risk signal), which its
		// errors count.
		// s_tie and s_tie2: one refusal each, the same score; the later request comes first.
		req("s_tie", "2026-11-22", 20*time.Minute, status(403)),
		req("s_tie2", "2026-11-22", 25*time.Minute, status(403)),
		// s_calm: requests in the period, no risk.
		req("s_calm", "2026-11-22", 15*time.Minute),
		// s_before: risky, but its requests are before the period.
		req("s_before", "2026-11-22", -2*time.Hour, mal),
		// s_across: risky, across the period without a request in it.
		req("s_across", "2026-11-22", -10*time.Minute, mal),
		req("s_across", "2026-11-22", 70*time.Minute, mal),
	}
	forEachDriver(t, func(t *testing.T, s *Store) {
		write(t, s, recs...)
		o, err := s.Overview(context.Background(), OverviewQuery{From: base, To: base.Add(time.Hour), SessionsBy: ByRisk})
		if err != nil {
			t.Fatal(err)
		}
		if o.SessionsBy != ByRisk {
			t.Errorf("sessions_by = %q; want risk", o.SessionsBy)
		}
		type row struct {
			Session         string
			User            string
			Risk            int
			Malicious, Errs int
			Last            time.Duration
		}
		var got []row
		for _, sc := range o.TopSessions {
			got = append(got, row{sc.Session, sc.User, sc.Risk, sc.Malicious, sc.Errors, sc.LastSeen.Sub(base)})
		}
		hi, tie, tie2, lo := partRisk(t, s, "s_hi"), partRisk(t, s, "s_tie"), partRisk(t, s, "s_tie2"), partRisk(t, s, "s_lo")
		if hi <= tie || tie != tie2 || tie <= lo || lo == 0 {
			t.Fatalf("fixture: risks s_hi %d, s_tie %d, s_tie2 %d, s_lo %d; want s_hi > s_tie = s_tie2 > s_lo > 0", hi, tie, tie2, lo)
		}
		want := []row{
			{"s_hi", "mallory", hi, 1, 0, 5*time.Minute + 20*time.Second},
			{"s_tie2", "", tie, 0, 0, 25 * time.Minute},
			{"s_tie", "", tie, 0, 0, 20 * time.Minute},
			{"s_lo", "", lo, 0, 1, 11 * time.Minute},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("riskiest sessions (-want +got):\n%s", diff)
		}
		// The order by malicious requests reports the risk of its parts too.
		o, err = s.Overview(context.Background(), OverviewQuery{From: base, To: base.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(o.TopSessions) != 1 || o.TopSessions[0].Session != "s_hi" || o.TopSessions[0].Risk != hi {
			t.Errorf("top sessions by malicious = %+v; want s_hi with risk %d", o.TopSessions, hi)
		}
		// Two hours before: s_before alone.
		o, err = s.Overview(context.Background(), OverviewQuery{From: base.Add(-3 * time.Hour), To: base.Add(-time.Hour), SessionsBy: ByRisk})
		if err != nil {
			t.Fatal(err)
		}
		if len(o.TopSessions) != 1 || o.TopSessions[0].Session != "s_before" || o.TopSessions[0].Malicious != 1 {
			t.Errorf("riskiest sessions two hours before = %+v; want s_before alone", o.TopSessions)
		}
	})
}

// partRisk is the risk score the part view reports for the part of session on 2026-11-22.
func partRisk(t *testing.T, s *Store, session string) int {
	t.Helper()
	v, err := s.Part(context.Background(), session, "2026-11-22", PartQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return v.Session.Risk
}

func TestBucketWidth(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		span, want time.Duration
	}{
		{time.Hour, time.Minute},
		{100 * time.Minute, time.Minute},
		{101 * time.Minute, 2 * time.Minute},
		{24 * time.Hour, 15 * time.Minute},
		{7 * 24 * time.Hour, 2 * time.Hour},
		{100 * 24 * time.Hour, 24 * time.Hour},
		{365 * 24 * time.Hour, 4 * 24 * time.Hour},
	} {
		if got := BucketWidth(base, base.Add(c.span)); got != c.want {
			t.Errorf("BucketWidth(%s) = %s; want %s", c.span, got, c.want)
		}
	}
}

func TestOverviewRejects(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	if _, err := s.Overview(context.Background(), OverviewQuery{From: base, To: base}); err == nil {
		t.Error("an empty period was accepted")
	}
	if _, err := s.Overview(context.Background(), OverviewQuery{From: base, To: base.Add(time.Hour), SessionsBy: "errors"}); err == nil {
		t.Error("an unknown order was accepted")
	}
}

// TestOverviewRouteBytes checks that the routes an overview ranks are bounded in bytes as well
// as in number: paths without a route are written by clients, each up to 2 KiB.
func TestOverviewRouteBytes(t *testing.T) {
	t.Parallel()
	rt := routeTable{m: map[routeKey]*RouteCount{}}
	long := strings.Repeat("x", 2047)
	held := 0
	for i := range maxRouteKeys {
		k := routeKey{host: "api.example.com", route: fmt.Sprintf("/%07d%s", i, long), isPath: true}
		if rc := rt.count(k); rc != nil {
			held += len(k.host) + len(k.route)
			rc.Malicious++
		}
	}
	// 100,000 paths of 2 KiB would be some 200 MiB; an overview holds at most 16 MiB of them.
	if held > 16<<20 || held == 0 {
		t.Errorf("the routes held hold %d bytes; want at most 16 MiB and some", held)
	}
	// A route already held keeps counting when the table is full.
	first := routeKey{host: "api.example.com", route: fmt.Sprintf("/%07d%s", 0, long), isPath: true}
	if rc := rt.count(first); rc == nil || rc.Malicious != 1 {
		t.Errorf("a held route is %+v once the table is full; want its count", rc)
	}
}

func TestOverviewPartsBound(t *testing.T) {
	t.Parallel()
	parts := partCounts{}
	for id := range int64(maxOverviewParts + 1000) {
		if sc := parts.count(id); sc != nil {
			sc.Malicious++
		}
	}
	if len(parts) != maxOverviewParts {
		t.Errorf("%d parts counted; want the bound, %d", len(parts), maxOverviewParts)
	}
	// A part already counted keeps counting when the table is full.
	if sc := parts.count(0); sc == nil || sc.Malicious != 1 {
		t.Errorf("a counted part is %+v once the table is full; want its count", sc)
	}
}
