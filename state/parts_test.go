package state

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// genStream is n requests of a few users over some days: mostly short gaps, some longer than
// idle, some across midnight, and some out of order (earlier than the user's previous request).
func genStream(seed uint64, n int, idle time.Duration, base time.Time) []*traffic.Exchange {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	users := []string{"alice", "bob", "carol", "dave"}
	last := map[string]time.Time{}
	out := make([]*traffic.Exchange, n)
	for i := range out {
		u := users[rng.IntN(len(users))]
		t, ok := last[u]
		if !ok {
			t = base.Add(time.Duration(rng.IntN(3600)) * time.Second)
		}
		switch r := rng.IntN(20); {
		case r < 12: // within the part
			t = t.Add(time.Duration(rng.Int64N(int64(idle))))
		case r < 15: // an idle gap, or nearly one
			t = t.Add(idle + time.Duration(rng.Int64N(int64(idle/2))) - idle/4)
		case r < 17: // out of order
			t = t.Add(-time.Duration(rng.Int64N(int64(idle))))
		default: // hours later, often past midnight
			t = t.Add(time.Duration(1+rng.IntN(5)) * time.Hour)
		}
		if t.After(last[u]) {
			last[u] = t
		}
		out[i] = request(u, t)
	}
	return out
}

// TestSharedPartsMatchOneEngine feeds one request stream to a local engine in order, and its
// two interleaved halves to two engines sharing one Redis: every request is named the same
// part, by Observe and by Peek before it.
func TestSharedPartsMatchOneEngine(t *testing.T) {
	t.Parallel()
	r := testRedis(t)
	// A past day runs the script for every request; today's requests mostly take the join
	// path, whose answers must be the same.
	past := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	today := time.Now().UTC().Add(-2 * time.Hour)
	for _, tc := range []struct {
		name string
		idle time.Duration
		base time.Time
	}{{"idle 0s", 0, past}, {"idle 10m", 10 * time.Minute, past}, {"idle 10m today", 10 * time.Minute, today}} {
		idle := tc.idle
		t.Run(tc.name, func(t *testing.T) {
			r := r
			r.KeyPrefix += strings.ReplaceAll(tc.name, " ", "-") + ":"
			ca, _ := newTestClient(t, r, nil)
			cb, _ := newTestClient(t, r, nil)
			local, lrec := newTestEngine(t, idle, nil)
			a, arec := newTestEngine(t, idle, ca.Parts())
			b, brec := newTestEngine(t, idle, cb.Parts())
			stream := genStream(uint64(idle)+1, 600, max(idle, 30*time.Minute), tc.base)
			latest := map[string]time.Time{}
			for i, x := range stream {
				shared := a
				if i%2 == 1 {
					shared = b
				}
				// Peek answers from the replica's own live part when the request joins it,
				// which is the shared answer unless another replica already recorded a later
				// request that opened a newer part: only a request earlier than one recorded
				// before it can meet that, so Peek is compared on requests in time order.
				_, wantPeek, _ := local.Peek(x)
				if _, got, _ := shared.Peek(x); got != wantPeek && !x.Start.Before(latest[x.RequestHeaders[0].Value]) {
					t.Fatalf("request %d (%s at %s): shared Peek names part %s, one engine %s (stats %+v %+v)", i, x.RequestHeaders[0].Value, x.Start, got, wantPeek, ca.Stats(), cb.Stats())
				}
				if x.Start.After(latest[x.RequestHeaders[0].Value]) {
					latest[x.RequestHeaders[0].Value] = x.Start
				}
				local.Observe(x)
				shared.Observe(x)
				shared.Flush() // the next request, on either engine, comes after this one ended
			}
			want := partsOf(lrec)
			got := append(partsOf(arec), partsOf(brec)...)
			if len(got) != len(want) {
				t.Fatalf("%d request records from the shared engines, %d from one engine", len(got), len(want))
			}
			for i := range stream {
				// Records come in stream order per engine: a took the even requests, b the odd.
				g := got[i/2]
				if i%2 == 1 {
					g = got[(len(stream)+1)/2+i/2]
				}
				if g != want[i] {
					t.Errorf("request %d (%s at %s): shared engines name part %s, one engine %s", i, stream[i].RequestHeaders[0].Value, stream[i].Start, g, want[i])
				}
			}
			if st := ca.Stats(); !st.Up || st.Errors[OpObserve]+st.Errors[OpPeek] != 0 {
				t.Errorf("client stats %+v; want up without errors", st)
			}
			// Each engine sees every other request, and the generator's gaps often pass the
			// idle timeout: a sixth of the requests or so can join the engine's own part.
			if joins := ca.Stats().Joins + cb.Stats().Joins; tc.base.Equal(today) && joins < 50 {
				t.Errorf("%d of %d requests of today took the join path; want at least 50", joins, len(stream))
			}
		})
	}
}

// partsOf lists the part of every request record, in emitted order.
func partsOf(r *recorder) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if q, ok := rec.(*record.Request); ok {
			out = append(out, q.Part)
		}
	}
	return out
}

// utcQuery is the part query of a request at t with days in UTC.
func utcQuery(t time.Time, idle time.Duration) sessions.PartQuery {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return sessions.PartQuery{T: t, Day: d.Format(time.DateOnly), DayEnd: d.AddDate(0, 0, 1).Unix(), Idle: idle}
}

// TestPartScriptRule checks the script's answers step by step, NOSCRIPT recovery included.
func TestPartScriptRule(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	p := c.Parts()
	ctx := context.Background()
	idle := 30 * time.Minute
	day1 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	q := func(t time.Time) sessions.PartQuery { return utcQuery(t, idle) }
	steps := []struct {
		name    string
		at      time.Time
		flush   bool
		wantDay string
		wantSeq int
	}{
		{name: "first request opens part 1", at: day1.Add(10 * time.Hour), wantDay: "2026-12-03", wantSeq: 1},
		{name: "within idle joins", at: day1.Add(10*time.Hour + 29*time.Minute), wantDay: "2026-12-03", wantSeq: 1},
		{name: "out of order joins", at: day1.Add(9 * time.Hour), wantDay: "2026-12-03", wantSeq: 1},
		{name: "idle gap opens part 2", at: day1.Add(11 * time.Hour), wantDay: "2026-12-03", wantSeq: 2},
		{name: "a script Redis forgot is sent again", at: day1.Add(11*time.Hour + time.Minute), flush: true, wantDay: "2026-12-03", wantSeq: 2},
		{name: "the next day opens its part 1", at: day1.Add(24*time.Hour + time.Minute), wantDay: "2026-12-04", wantSeq: 1},
		{name: "a late request of the day before joins", at: day1.Add(23 * time.Hour), wantDay: "2026-12-04", wantSeq: 1},
	}
	for _, s := range steps {
		if s.flush {
			if err := c.rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		st, ok := p.ObservePart(ctx, "s_1", q(s.at))
		if !ok || st.Day != s.wantDay || st.Seq != s.wantSeq {
			t.Errorf("%s: state %+v ok=%v; want %s.%d", s.name, st, ok, s.wantDay, s.wantSeq)
		}
	}
	ttl := c.rdb.TTL(ctx, c.key("part", "s_1")).Val()
	if ttl <= 0 {
		t.Errorf("the part key has TTL %s; want an expiry", ttl)
	}
	if _, found, ok := p.PeekPart(ctx, "s_unknown"); !ok || found {
		t.Errorf("PeekPart of a session without state: found=%v ok=%v; want known and not found", found, ok)
	}
}

// TestFailOpenAndRecovery points a client at Redis through a proxy, closes the proxy (Redis
// gone: the engine decides locally, counted, the breaker open) and opens it again (the probe
// closes the breaker and the shared state is used again).
func TestFailOpenAndRecovery(t *testing.T) {
	t.Parallel()
	c, px, logs := cutClient(t, 200*time.Millisecond, true)
	e, _ := newTestEngine(t, 0, c.Parts())
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

	px.Cut()
	for i := range tripAfter + 2 {
		if _, part, _ := e.Peek(request("alice", at.Add(time.Duration(i)*time.Second))); part != "2026-12-03" {
			t.Errorf("Peek with Redis gone names %s; want the local answer 2026-12-03", part)
		}
	}
	st := c.Stats()
	if st.Up || st.Errors[OpPeek] != tripAfter || st.Skipped[OpPeek] != 2 {
		t.Errorf("stats with Redis gone: %+v; want down after %d peek errors, then 2 peeks skipped", st, tripAfter)
	}
	if n := strings.Count(logs.String(), "Redis round trip failed"); n != 1 {
		t.Errorf("%d failure lines logged; want 1", n)
	}
	if c.probe() {
		t.Fatal("the probe succeeded with Redis gone")
	}

	px.Restore()
	if !c.probe() || !c.Up() {
		t.Fatal("the probe did not bring Redis back")
	}
	if _, ok := c.Parts().ObservePart(context.Background(), "s_x", sessions.PartQuery{T: at, Day: "2026-12-03", DayEnd: at.Add(14 * time.Hour).Unix()}); !ok {
		t.Error("ObservePart after recovery is unknown; want the shared answer")
	}
}

// TestUnreachableAtStart: a Redis that is not there at start is not fatal; the client starts
// down and answers "unknown" at once.
func TestUnreachableAtStart(t *testing.T) {
	t.Parallel()
	r := config.Default().State.Redis
	r.Address = closedPort(t)
	c, logs := newTestClient(t, r, nil)
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("Start reached a closed port")
	}
	if c.Up() || !strings.Contains(logs.String(), "Redis unreachable at start") {
		t.Errorf("up=%v, logs %s; want down and the start warning", c.Up(), logs.String())
	}
	if _, _, ok := c.Parts().PeekPart(context.Background(), "s_1"); ok {
		t.Error("PeekPart with Redis down is known; want unknown")
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	px := testutil.NewCutProxy(t, "127.0.0.1:1")
	addr := px.Addr
	px.Cut()
	return addr
}

// TestLogLimit lets one line a minute through and counts the rest.
func TestLogLimit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	l := logLimit{now: func() time.Time { return now }, every: time.Minute}
	if _, ok := l.allow(); !ok {
		t.Fatal("the first line was held back")
	}
	for range 5 {
		now = now.Add(10 * time.Second)
		if _, ok := l.allow(); ok && now.Second() != 0 {
			t.Errorf("a line at %s passed within the minute", now)
		}
	}
	now = now.Add(15 * time.Second)
	if n, ok := l.allow(); !ok || n != 5 {
		t.Errorf("after a minute: allowed=%v held=%d; want allowed with 5 held back", ok, n)
	}
}

// TestUnreadableState: a value at a part key that is not a part state makes Peek unknown
// (counted, Redis stays in the path) and is replaced by the next update.
func TestUnreadableState(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	ctx := context.Background()
	if err := c.rdb.Set(ctx, c.key("part", "s_bad"), "not a state", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for range tripAfter + 1 {
		if _, _, ok := c.Parts().PeekPart(ctx, "s_bad"); ok {
			t.Fatal("PeekPart of an unreadable state is known; want unknown")
		}
	}
	if st := c.Stats(); !st.Up || st.Errors[OpPeek] != tripAfter+1 {
		t.Errorf("stats %+v; want up with %d peek errors", st, tripAfter+1)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st, ok := c.Parts().ObservePart(ctx, "s_bad", sessions.PartQuery{T: at, Day: "2026-12-03", DayEnd: at.Add(14 * time.Hour).Unix()})
	if !ok || st.Day != "2026-12-03" || st.Seq != 1 {
		t.Errorf("ObservePart over an unreadable state = %+v, %v; want part 1 of the day", st, ok)
	}
}

// TestParsePartState reads the scripts' form and refuses anything else.
func TestParsePartState(t *testing.T) {
	t.Parallel()
	st, err := parsePartState("2026-12-03 1796428800 2 -5000000000")
	if want := (sessions.PartState{Day: "2026-12-03", DayEnd: 1796428800, Seq: 2, LastSeen: -5000000000}); err != nil || st != want {
		t.Errorf("parsePartState = %+v, %v; want %+v", st, err, want)
	}
	for _, bad := range []string{"", "not a state", "2026-12-03 1 2", "2026-12-03 1 2 3 4", "2026-12-03 1 0 3",
		" 1 2 3", "2026-12-03  1 2 3", "2026-12-03 x 2 3", strings.Repeat("d", 33) + " 1 2 3"} {
		if st, err := parsePartState(bad); !errors.Is(err, errUnreadable) {
			t.Errorf("parsePartState(%q) = %+v, %v; want errUnreadable", bad, st, err)
		}
	}
}

// TestPartJoinPath: a request the engine says joins its part is settled without the script
// when the shared state names that part, and moves the part's latest request up; when another
// replica opened a newer part meanwhile, the script decides; a join never creates state.
func TestPartJoinPath(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, testRedis(t), nil)
	p := c.Parts()
	ctx := context.Background()
	idle := 10 * time.Minute
	now := time.Now().UTC()
	at := now.Add(-time.Hour)
	if at.YearDay() != now.YearDay() {
		at = now // just after midnight: stay on today
	}
	q := func(t time.Time) sessions.PartQuery { return utcQuery(t, idle) }
	first, ok := p.ObservePart(ctx, "s_j", q(at))
	if !ok || first.Seq != 1 {
		t.Fatalf("first request: %+v ok=%v; want part 1", first, ok)
	}
	us := []sessions.PartUpdate{{ID: "s_j", Q: q(at.Add(20 * time.Second)), JoinSeq: 1}}
	p.ObserveParts(ctx, us)
	if !us[0].OK || us[0].State.Seq != 1 || c.Stats().Joins != 1 {
		t.Fatalf("join: %+v, joins %d; want part 1 settled by the join path", us[0], c.Stats().Joins)
	}
	st, found, ok := p.PeekPart(ctx, "s_j")
	if want := at.Add(20 * time.Second).Sub(time.Unix(first.DayEnd, 0)).Nanoseconds(); !ok || !found || st.LastSeen != want {
		t.Errorf("after the join, PeekPart reads latest %d (found=%v ok=%v); want the joined request's %d", st.LastSeen, found, ok, want)
	}
	// Several joins of the session in one batch, out of order: each settled, the latest
	// request the batch's latest.
	us = []sessions.PartUpdate{
		{ID: "s_j", Q: q(at.Add(40 * time.Second)), JoinSeq: 1},
		{ID: "s_j", Q: q(at.Add(50 * time.Second)), JoinSeq: 1},
		{ID: "s_j", Q: q(at.Add(30 * time.Second)), JoinSeq: 1},
	}
	p.ObserveParts(ctx, us)
	for i, u := range us {
		if !u.OK || u.State.Seq != 1 {
			t.Fatalf("join %d of a batch: %+v; want part 1", i, u)
		}
	}
	if c.Stats().Joins != 4 {
		t.Errorf("joins %d; want 4", c.Stats().Joins)
	}
	st, _, _ = p.PeekPart(ctx, "s_j")
	if want := at.Add(50 * time.Second).Sub(time.Unix(first.DayEnd, 0)).Nanoseconds(); st.LastSeen != want {
		t.Errorf("after a batch of joins, the latest request is %d; want the batch's latest %d", st.LastSeen, want)
	}
	// Another replica sees a request past the idle timeout and opens part 2; this replica's
	// earlier request, which it thinks joins part 1, is refused and goes to the script: it is
	// out of order in part 2.
	if st, ok := p.ObservePart(ctx, "s_j", q(at.Add(idle+time.Minute))); !ok || st.Seq != 2 {
		t.Fatalf("a request after the idle gap: %+v ok=%v; want part 2", st, ok)
	}
	us = []sessions.PartUpdate{{ID: "s_j", Q: q(at.Add(time.Minute)), JoinSeq: 1}}
	p.ObserveParts(ctx, us)
	if !us[0].OK || us[0].State.Seq != 2 || c.Stats().JoinsRefused != 1 {
		t.Errorf("a join of part 1 after part 2 opened: %+v, refused %d; want part 2 from the script, 1 refused", us[0], c.Stats().JoinsRefused)
	}
	us = []sessions.PartUpdate{{ID: "s_none", Q: q(at), JoinSeq: 1}}
	p.ObserveParts(ctx, us)
	if !us[0].OK || us[0].State.Seq != 1 {
		t.Errorf("a join of a session without state: %+v; want part 1 from the script", us[0])
	}
	if ttl := c.rdb.TTL(ctx, c.key("last", "s_none")).Val(); ttl <= 0 {
		t.Errorf("the last key of a session the script opened has TTL %s; want an expiry", ttl)
	}
}

// PeekSession, what an inline answer without dynamic metadata asks, names the session of a
// request this replica holds no live part of without a round trip: only the part needs the
// shared state. Peek, for the same request, reads it.
func TestPeekSessionReadsNoSharedState(t *testing.T) {
	t.Parallel()
	c, px, _ := cutClient(t, 200*time.Millisecond, true)
	e, _ := newTestEngine(t, 0, c.Parts())
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	px.Cut()
	x := request("alice", at)
	session, key := e.PeekSession(x)
	if st := c.Stats(); st.Errors[OpPeek]+st.Skipped[OpPeek] != 0 {
		t.Errorf("PeekSession tried Redis: %+v", st)
	}
	wantSession, _, wantKey := e.Peek(x)
	if session != wantSession || key != wantKey {
		t.Errorf("PeekSession named %s %v; Peek %s %v", session, key, wantSession, wantKey)
	}
	if st := c.Stats(); st.Errors[OpPeek] != 1 {
		t.Errorf("Peek of a session with no live part here: %+v; want one failed read", st)
	}
}
