package sessions

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s not available: %v", name, err)
	}
	return loc
}

// TestDaySplit crosses midnight in a zone east of UTC, where the UTC date would put both
// requests on one day.
func TestDaySplit(t *testing.T) {
	t.Parallel()
	tokyo := mustLoad(t, "Asia/Tokyo")
	cfg := testConfig(t)
	cfg.Sessions.DayBoundary = "Asia/Tokyo"
	e, em, _ := newTestEngine(t, cfg)

	before := time.Date(2026, 3, 10, 23, 58, 0, 0, tokyo) // 14:58 UTC on the 10th
	after := time.Date(2026, 3, 11, 0, 2, 0, 0, tokyo)    // 15:02 UTC on the 10th

	r1 := e.observe(at(exchange("GET", "/", "x-session-id", "s1"), before))
	r2 := e.observe(at(exchange("GET", "/", "x-session-id", "s1"), after))
	if r1.Part != "2026-03-10" || r2.Part != "2026-03-11" {
		t.Fatalf("parts = %s, %s; want 2026-03-10, 2026-03-11 (days in Asia/Tokyo)", r1.Part, r2.Part)
	}
	ss := em.sessions()
	if len(ss) != 1 || !ss[0].Final || ss[0].EndReason != record.EndDay || ss[0].Part != "2026-03-10" || ss[0].Requests != 1 {
		t.Fatalf("the second request should end part 2026-03-10 with one final record (day), got %+v", ss)
	}

	// The sweeper ends the second part once its day is over in Tokyo, not in UTC.
	e.sweep(time.Date(2026, 3, 11, 23, 59, 0, 0, tokyo))
	for _, s := range em.sessions() {
		if s.Final {
			t.Fatalf("sweep before midnight in Tokyo ended part %s", s.Part)
		}
	}
	e.sweep(time.Date(2026, 3, 12, 0, 0, 0, 0, tokyo))
	ss = em.sessions()
	if len(ss) != 1 || !ss[0].Final || ss[0].EndReason != record.EndDay || ss[0].Part != "2026-03-11" {
		t.Fatalf("sweep at midnight in Tokyo: want one final day record for 2026-03-11, got %+v", ss)
	}
	if n := e.parts.len(); n != 0 {
		t.Errorf("%d live parts after the day ended, want 0", n)
	}
}

func TestIdleSplit(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		sweepAt   time.Duration // > 0: the sweeper runs at base + sweepAt before the third request
		wantParts []string
	}{
		{name: "the late request ends the part", wantParts: []string{"2026-11-22", "2026-11-22", "2026-11-22.2", "2026-11-22.3"}},
		{name: "the sweeper ends the part first", sweepAt: 45 * time.Minute, wantParts: []string{"2026-11-22", "2026-11-22", "2026-11-22.2", "2026-11-22.3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
			e, em, _ := newTestEngine(t, cfg)
			times := []time.Duration{0, 10 * time.Minute, 50 * time.Minute, 2 * time.Hour}
			var got []string
			var finals []*record.Session
			for i, d := range times {
				if i == 2 && tc.sweepAt > 0 {
					e.sweep(base.Add(tc.sweepAt))
				}
				r := e.observe(at(exchange("GET", "/", "x-session-id", "idle"), base.Add(d)))
				got = append(got, r.Part)
				for _, s := range em.sessions() {
					if s.Final {
						finals = append(finals, s)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.wantParts, " ") {
				t.Errorf("%s: parts = %v, want %v", tc.name, got, tc.wantParts)
			}
			if len(finals) != 2 || finals[0].EndReason != record.EndIdle || finals[0].Requests != 2 ||
				finals[1].Part != "2026-11-22.2" || finals[1].EndReason != record.EndIdle {
				t.Errorf("%s: want two final idle records (2 requests, then part .2), got %+v", tc.name, finals)
			}
			if _, p, _ := e.Peek(at(exchange("GET", "/", "x-session-id", "idle"), base.Add(5*time.Hour))); p != "2026-11-22.4" {
				t.Errorf("%s: Peek after another idle gap = %s, want 2026-11-22.4", tc.name, p)
			}
		})
	}
}

func TestOutOfOrderRequestJoinsPart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.IdleTimeout = config.Duration(30 * time.Minute)
	e, em, _ := newTestEngine(t, cfg)
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	e.Observe(at(exchange("GET", "/", "x-session-id", "o"), base))
	r := e.observe(at(exchange("GET", "/", "x-session-id", "o"), base.Add(-2*time.Second)))
	if r.Part != "2026-11-22" {
		t.Errorf("an earlier request landed in part %s, want the current part", r.Part)
	}
	e.sweep(base.Add(time.Second))
	ss := em.sessions()
	if len(ss) != 1 || ss[0].Requests != 2 || !ss[0].FirstSeen.Equal(base.Add(-2*time.Second)) || !ss[0].LastSeen.Equal(base) {
		t.Errorf("want one snapshot with 2 requests, first_seen = the earlier request, last_seen = the later; got %+v", ss)
	}
}

func TestEvictionEmitsFinal(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Sessions.MaxLiveParts = 1
	e, em, _ := newTestEngine(t, cfg)
	e.Observe(exchange("GET", "/", "x-session-id", "first"))
	e.Observe(exchange("GET", "/", "x-session-id", "second"))
	ss := em.sessions()
	if len(ss) != 1 || ss[0].Session != wantID("first") || !ss[0].Final || ss[0].EndReason != record.EndEvicted {
		t.Fatalf("want the first part ended as evicted, got %+v", ss)
	}
	if n := e.parts.len(); n != 1 {
		t.Errorf("%d live parts, want 1", n)
	}
}

func TestReloadResizeEvicts(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	e, em, _ := newTestEngine(t, cfg)
	for i := range 200 {
		e.Observe(exchange("GET", "/", "x-session-id", fmt.Sprint(i)))
	}
	em.take()
	small := testConfig(t)
	small.Sessions.MaxLiveParts = 64
	if err := e.Reload(small); err != nil {
		t.Fatal(err)
	}
	ss := em.sessions()
	if n := e.parts.len(); n > 64 {
		t.Errorf("%d live parts after shrinking to 64", n)
	}
	if len(ss)+e.parts.len() != 200 {
		t.Errorf("%d evicted + %d live != 200 parts", len(ss), e.parts.len())
	}
	for _, s := range ss {
		if !s.Final || s.EndReason != record.EndEvicted {
			t.Fatalf("shrinking emitted %+v, want final evicted records", s)
		}
	}
}

func TestCloseEmitsFinals(t *testing.T) {
	t.Parallel()
	e, em, _ := newTestEngine(t, testConfig(t))
	for _, id := range []string{"a", "b", "c"} {
		e.Observe(exchange("GET", "/", "x-session-id", id))
	}
	em.take()
	e.Close()
	e.Close() // idempotent
	ss := em.sessions()
	if len(ss) != 3 {
		t.Fatalf("Close emitted %d session records, want 3", len(ss))
	}
	if r := e.observe(exchange("GET", "/", "x-session-id", "late")); r.Part != "2026-11-22" || e.parts.len() != 0 {
		t.Errorf("Observe after Close: part %q and %d live parts, want a named part and no state", r.Part, e.parts.len())
	}
	for _, s := range ss {
		if !s.Final || s.EndReason != record.EndShutdown {
			t.Errorf("Close emitted %+v, want final shutdown", s)
		}
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	e, em, _ := newTestEngine(t, testConfig(t))
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	e.Observe(at(exchange("GET", "/", "x-session-id", "snap"), t0))

	steps := []struct {
		name    string
		observe bool
		sweepAt time.Duration
		want    int // non-final session records
		wantReq int
	}{
		{name: "a new part is snapshotted at the next tick", sweepAt: time.Second, want: 1, wantReq: 1},
		{name: "an unchanged part is not repeated", sweepAt: 30 * time.Second, want: 0},
		{name: "a change within the interval waits", observe: true, sweepAt: 50 * time.Second, want: 0},
		{name: "the interval passed since the last record", sweepAt: time.Minute + time.Second, want: 1, wantReq: 2},
		{name: "nothing changed since", sweepAt: 10 * time.Minute, want: 0},
	}
	for _, st := range steps {
		if st.observe {
			e.Observe(at(exchange("GET", "/", "x-session-id", "snap"), t0.Add(st.sweepAt-time.Second)))
			em.take()
		}
		e.sweep(t0.Add(st.sweepAt))
		ss := em.sessions()
		if len(ss) != st.want {
			t.Fatalf("%s: %d session records, want %d", st.name, len(ss), st.want)
		}
		for _, s := range ss {
			if s.Final || s.Requests != st.wantReq {
				t.Errorf("%s: record %+v, want non-final with %d requests", st.name, s, st.wantReq)
			}
		}
	}
}

func TestSessionRecordContents(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "user", In: config.InRequestHeader, Key: "x-user", Type: config.TypeUser},
		{Name: "role", In: config.InRequestHeader, Key: "x-role", Type: config.TypeRole, Hashed: true},
	}
	e, em, _ := newTestEngine(t, testConfig(t, params...))
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	x1 := withResponse(withJSONBody(at(exchange("POST", "/a", "x-session-id", "r", "x-user", "alice", "user-agent", "ua1"), t0), `{"a":1}`), 201, `{"b":22}`)
	x2 := at(exchange("GET", "/b", "x-session-id", "r", "x-user", "bob", "x-role", "admin", "user-agent", "ua2"), t0.Add(time.Minute))
	x2.SourceAddress = "[2001:db8::1]:1"
	x2.Partial = true
	e.Observe(x1)
	e.Observe(x2)
	em.take()
	e.sweep(t0.Add(2 * time.Minute))
	ss := em.sessions()
	if len(ss) != 1 {
		t.Fatalf("want one snapshot, got %d", len(ss))
	}
	s := ss[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"kind", s.Kind, record.KindSession},
		{"session", s.Session, wantID("r")},
		{"part", s.Part, "2026-11-22"},
		{"requests", s.Requests, 2},
		{"key", s.Key, record.Key{Source: "builtin", Name: "header:x-session-id"}},
		{"user (latest)", s.User, "bob"},
		{"role (hashed)", s.Role, wantHashed("admin")},
		{"ips", strings.Join(s.IPs, ","), "203.0.113.7,2001:db8::1"},
		{"user agents", strings.Join(s.UserAgents, ","), "ua1,ua2"},
		{"methods", fmt.Sprint(s.Methods), "map[GET:1 POST:1]"},
		{"statuses", fmt.Sprint(s.Statuses), "map[0:1 201:1]"},
		{"bytes in", s.BytesIn, int64(7)},
		{"bytes out", s.BytesOut, int64(8)},
		{"first seen", s.FirstSeen.String(), "2026-11-22T12:00:00.000Z"},
		{"last seen", s.LastSeen.String(), "2026-11-22T12:01:00.000Z"},
		{"final", s.Final, false},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("session record %s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Records are values: a later request must not change a record already emitted.
	e.Observe(at(exchange("PUT", "/c", "x-session-id", "r", "user-agent", "ua3"), t0.Add(3*time.Minute)))
	if s.Methods["PUT"] != 0 || len(s.UserAgents) != 2 || s.Requests != 2 {
		t.Errorf("an emitted session record changed after a later request: %+v", s)
	}
}

func TestDistinctCaps(t *testing.T) {
	t.Parallel()
	e, em, _ := newTestEngine(t, testConfig(t))
	for i := range 100 {
		x := exchange(fmt.Sprintf("M%d", i), "/", "x-session-id", "caps", "user-agent", fmt.Sprintf("ua-%d", i))
		x.SourceAddress = fmt.Sprintf("10.0.%d.%d:1", i/256, i%256)
		x.Status = 100 + i
		e.Observe(x)
	}
	em.take()
	e.sweep(time.Date(2026, 11, 22, 12, 0, 1, 0, time.UTC))
	ss := em.sessions()
	if len(ss) != 1 {
		t.Fatalf("want one snapshot, got %d", len(ss))
	}
	s := ss[0]
	if len(s.IPs) != record.MaxDistinct || len(s.UserAgents) != record.MaxDistinct {
		t.Errorf("ips %d, user agents %d; want both capped at %d", len(s.IPs), len(s.UserAgents), record.MaxDistinct)
	}
	if len(s.Methods) > record.MaxDistinct+1 || s.Methods[otherBucket] != 100-record.MaxDistinct {
		t.Errorf("methods has %d keys and other=%d; want at most %d keys, the rest counted as other",
			len(s.Methods), s.Methods[otherBucket], record.MaxDistinct+1)
	}
	if len(s.Statuses) > record.MaxDistinct+1 {
		t.Errorf("statuses has %d keys, want at most %d", len(s.Statuses), record.MaxDistinct+1)
	}
}

// TestConcurrentObserve runs Observe, Peek, sweep and Reload at once; run with -race.
func TestConcurrentObserve(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, seedParams...)
	cfg.Sessions.MaxLiveParts = 50
	e, em, _ := newTestEngine(t, cfg)
	reload := testConfig(t, seedParams...)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				x := withResponse(withJSONBody(exchange("POST", "/x", "x-session-id", fmt.Sprint((w*each+i)%97)), `{"in":"x"}`), 200, `{"ok":1}`)
				e.Observe(x)
				e.Peek(x)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			e.sweep(time.Date(2026, 11, 22, 12, 0, i, 0, time.UTC))
			if err := e.Reload(reload); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	e.Close()
	var reqs, finalReqs int
	for _, r := range em.take() {
		switch r := r.(type) {
		case *record.Request:
			reqs++
		case *record.Session:
			if r.Final {
				finalReqs += r.Requests
			}
		}
	}
	if reqs != workers*each || finalReqs != workers*each {
		t.Errorf("%d request records and %d requests in final records, want %d each", reqs, finalReqs, workers*each)
	}
}

// TestDayOfKeepsToday checks that the day dayOf keeps between calls names every instant as
// computing it afresh does: in zones whose days have 23 or 25 hours, and one that skipped a
// midnight (São Paulo on 2018-11-04, whose day began at 01:00), in any order of times.
func TestDayOfKeepsToday(t *testing.T) {
	for _, zone := range []string{"UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Chatham"} {
		loc := mustLoad(t, zone)
		fresh := partRules{loc: loc}
		kept := partRules{loc: loc, today: new(atomic.Pointer[calendarDay])}
		rng := rand.New(rand.NewPCG(1, 2))
		var ts []time.Time
		for _, around := range []time.Time{
			time.Date(2018, 11, 4, 0, 0, 0, 0, time.UTC), time.Date(2018, 11, 4, 3, 0, 0, 0, time.UTC),
			time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC),
			time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(2026, 4, 4, 14, 0, 0, 0, time.UTC),
		} {
			for m := -36 * 60; m <= 36*60; m += 7 {
				ts = append(ts, around.Add(time.Duration(m)*time.Minute))
			}
		}
		// In order first (most calls hit the kept day), then shuffled.
		order := slices.Clone(ts)
		rng.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
		for _, tm := range append(order, ts...) {
			wantDay, wantEnd := fresh.dayOf(tm)
			gotDay, gotEnd := kept.dayOf(tm)
			if gotDay != wantDay || !gotEnd.Equal(wantEnd) {
				t.Fatalf("%s: dayOf(%s) = %s, %s; want %s, %s", zone, tm, gotDay, gotEnd, wantDay, wantEnd)
			}
		}
	}
}
