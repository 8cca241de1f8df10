package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// mergeRequests is a few parts' worth of request records whose values collide on purpose:
// equal times, equal request ids, users and roles that change, many IPs and user agents,
// more methods than a record lists.
func mergeRequests(n int) []record.Record {
	rng := rand.New(rand.NewPCG(11, 12))
	var out []record.Record
	for i := range n {
		p := i % 4
		part := "2026-11-22"
		if p == 3 {
			part = "2026-11-22.2"
		}
		at := time.Duration(rng.IntN(n/4)) * time.Second // many requests share a time
		out = append(out, req(fmt.Sprintf("s_m%d", p%3), part, at, func(r *record.Request) {
			r.RequestID = fmt.Sprintf("id%d", rng.IntN(n/3)) // and some a request id
			r.User = []string{"", "ann", "ben", "cid"}[rng.IntN(4)]
			r.Role = []string{"", "admin", "user"}[rng.IntN(3)]
			r.ClientIP = fmt.Sprintf("192.0.2.%d", rng.IntN(40))
			r.UserAgent = fmt.Sprintf("agent/%d", rng.IntN(40))
			r.Method = fmt.Sprintf("M%d", rng.IntN(36))
			r.Status = 200 + rng.IntN(5)*100
			r.Flows = [][]string{nil, {"auth"}, {"auth", "billing"}}[rng.IntN(3)]
			r.Key = record.Key{Source: record.SourceParam, Name: []string{"sid", "token"}[rng.IntN(2)]}
			r.RequestBytes, r.ResponseBytes = int64(rng.IntN(1000)), int64(rng.IntN(5000))
			if rng.IntN(10) == 0 {
				r.Malicious = true
				r.Attack = &record.Attack{Source: "header", Types: []string{"sqli", "xss"}[:1+rng.IntN(2)]}
			}
		}))
	}
	return out
}

// storedParts is every stored part: the list's records, and each part's view with all its
// requests.
func storedParts(t *testing.T, s *Store) (*Page, map[string]*PartView) {
	t.Helper()
	ctx := context.Background()
	page, err := s.List(ctx, ListQuery{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	views := map[string]*PartView{}
	for _, r := range page.Sessions {
		v, err := s.Part(ctx, r.Session, r.Part, PartQuery{Limit: MaxPartLimit})
		if err != nil {
			t.Fatal(err)
		}
		views[r.Session+"/"+r.Part] = v
	}
	return page, views
}

// splitBatches cuts recs, in the order perm gives, into batches of random sizes.
func splitBatches(recs []record.Record, perm []int, rng *rand.Rand) [][]record.Record {
	var out [][]record.Record
	for start := 0; start < len(perm); {
		n := min(1+rng.IntN(60), len(perm)-start)
		var b []record.Record
		for _, i := range perm[start : start+n] {
			b = append(b, recs[i])
		}
		out = append(out, b)
		start += n
	}
	return out
}

// TestPartsIndependentOfOrder writes the same request records in one batch, and in batches
// of random sizes in random orders through one writer and through two writers on one
// database: every part must read the same, field by field.
func TestPartsIndependentOfOrder(t *testing.T) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testPartsIndependentOfOrder(t, d)
		})
	}
}

func testPartsIndependentOfOrder(t *testing.T, driver string) {
	recs := mergeRequests(600)
	now := func() time.Time { return base.Add(time.Hour) }
	o := freshOptions(t, driver)
	o.Now, o.IdleTimeout = now, 30*time.Minute
	want := openTestWith(t, o)
	write(t, want, recs...)
	wantPage, wantViews := storedParts(t, want)
	if len(wantPage.Sessions) != 4 {
		t.Fatalf("%d parts; want 4", len(wantPage.Sessions))
	}
	if r := wantPage.Sessions[0]; len(r.IPs) != shownValues || r.Methods[otherValue] == 0 {
		t.Fatalf("part %s lists %d IPs and %d other methods; the test wants both capped", r.Part, len(r.IPs), r.Methods[otherValue])
	}
	ignoreIDs := cmp.Comparer(func(a, b record.Time) bool { return a.Equal(b.Time) })
	for round := range 4 {
		rng := rand.New(rand.NewPCG(uint64(round), 99))
		perm := rng.Perm(len(recs))
		if round == 0 {
			slices.Reverse(perm)
		}
		o := freshOptions(t, driver)
		o.Now, o.IdleTimeout = now, 30*time.Minute
		writers := 1 + round%2
		var stores []*Store
		for range writers {
			stores = append(stores, openTestWith(t, o))
		}
		for i, b := range splitBatches(recs, perm, rng) {
			write(t, stores[i%writers], b...)
		}
		page, views := storedParts(t, stores[0])
		if diff := cmp.Diff(wantPage, page, ignoreIDs); diff != "" {
			t.Errorf("round %d (%d writers): list differs from one batch's (-want +got):\n%s", round, writers, diff)
		}
		for k, v := range views {
			// Requests at the same time come in the order they were stored.
			v.Requests, wantViews[k].Requests = nil, nil
		}
		if diff := cmp.Diff(wantViews, views, ignoreIDs); diff != "" {
			t.Errorf("round %d (%d writers): parts differ from one batch's (-want +got):\n%s", round, writers, diff)
		}
		if diff := cmp.Diff(mixedBits(t, want), mixedBits(t, stores[0])); diff != "" {
			t.Errorf("round %d (%d writers): parts.mixed differs from one batch's (-want +got):\n%s", round, writers, diff)
		}
	}
}

// TestStoredOnceByContent writes the same request records in one batch, and again in batches
// of other sizes and orders, some written twice in a row (a retry after a lost
// acknowledgement), some holding a record twice, then all of them as the spool gives them back
// (decoded anew), then through a second writer (a restart): the store must be the store of
// one write, and requests that share a request id but differ otherwise (redirect hops) must
// all stay.
func TestStoredOnceByContent(t *testing.T) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testStoredOnce(t, d)
		})
	}
}

func testStoredOnce(t *testing.T, driver string) {
	recs := mergeRequests(400)
	for i := range 3 {
		recs = append(recs, req("s_hop", "2026-11-22", time.Minute, func(r *record.Request) {
			r.RequestID = "hop" // one x-request-id across the redirects, at the same millisecond
			r.Path = fmt.Sprintf("/login/step%d", i)
			r.Status = []int{302, 302, 200}[i]
		}))
	}
	now := func() time.Time { return base.Add(time.Hour) }
	o := freshOptions(t, driver)
	o.Now, o.IdleTimeout = now, 30*time.Minute
	want := openTestWith(t, o)
	write(t, want, recs...)
	wantPage, wantViews := storedParts(t, want)
	if v := wantViews["s_hop/2026-11-22"]; v == nil || len(v.Requests) != 3 || v.Session.Requests != 3 {
		t.Fatalf("the three redirect hops of one request id: %+v; want 3 requests", v)
	}

	o = freshOptions(t, driver)
	o.Now, o.IdleTimeout = now, 30*time.Minute
	s := openTestWith(t, o)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, b := range splitBatches(recs, rng.Perm(len(recs)), rng) {
		write(t, s, b...)
		if rng.IntN(2) == 0 {
			write(t, s, b...) // the retry of a batch whose acknowledgement was lost
		}
	}
	again := make([]record.Record, len(recs))
	for i, r := range recs {
		again[i] = redecode(t, r.(*record.Request))
	}
	for _, b := range splitBatches(again, rng.Perm(len(again)), rng) {
		if rng.IntN(3) == 0 {
			b = append(b, b[0])
		}
		write(t, s, b...)
	}
	write(t, openTestWith(t, o), recs[:len(recs)/2]...) // another writer of the same database
	page, views := storedParts(t, s)
	ignoreIDs := cmp.Comparer(func(a, b record.Time) bool { return a.Equal(b.Time) })
	if diff := cmp.Diff(wantPage, page, ignoreIDs); diff != "" {
		t.Errorf("list differs from one write's (-want +got):\n%s", diff)
	}
	for k, v := range views {
		if w := wantViews[k]; w != nil && len(v.Requests) != len(w.Requests) {
			t.Errorf("part %s: %d request rows; want %d", k, len(v.Requests), len(w.Requests))
		}
		// Requests at the same time come in the order they were stored.
		v.Requests, wantViews[k].Requests = nil, nil
	}
	if diff := cmp.Diff(wantViews, views, ignoreIDs); diff != "" {
		t.Errorf("parts differ from one write's (-want +got):\n%s", diff)
	}
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Errorf("%d request rows; want %d, each record once", n, len(recs))
	}
}

// redecode is r as a replay brings it back: encoded as the sinks encode it, decoded anew.
func redecode(t testing.TB, r *record.Request) *record.Request {
	t.Helper()
	b, err := sinks.AppendRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	var out record.Request
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestPartEnds derives whether a part has ended: its day is over, it has been idle longer
// than the idle timeout, or a later part of its session exists.
func TestPartEnds(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		testPartEnds(t, s)
	})
}

func testPartEnds(t *testing.T, s *Store) {
	now := base.Add(time.Hour) // 2026-11-22 11:00 UTC
	s.now, s.parts.idle = func() time.Time { return now }, 30*time.Minute
	write(t, s,
		req("s_day", "2026-11-21", -12*time.Hour),
		req("s_idle", "2026-11-22", 10*time.Minute),
		req("s_live", "2026-11-22", 50*time.Minute),
		req("s_next", "2026-11-22", 40*time.Minute),
		req("s_next", "2026-11-22.2", 55*time.Minute),
	)
	for _, tc := range []struct {
		session, part, reason string
	}{
		{"s_day", "2026-11-21", record.EndDay},
		{"s_idle", "2026-11-22", record.EndIdle},
		{"s_live", "2026-11-22", ""},
		{"s_next", "2026-11-22", record.EndIdle},
		{"s_next", "2026-11-22.2", ""},
	} {
		v, err := s.Part(context.Background(), tc.session, tc.part, PartQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if v.Session.EndReason != tc.reason || v.Session.Final != (tc.reason != "") {
			t.Errorf("%s/%s: final %v, reason %q; want reason %q", tc.session, tc.part, v.Session.Final, v.Session.EndReason, tc.reason)
		}
	}
	// In Tokyo the day of 2026-11-22 ends at 15:00 UTC; in UTC it goes on.
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skip("no time zone database")
	}
	late := base.Add(6 * time.Hour)
	if got := (partRules{zone: tokyo}).ended("2026-11-22", late, false, late); got != record.EndDay {
		t.Errorf("a Tokyo day at 01:00 the next day local: %q; want day", got)
	}
	if got := (partRules{zone: time.UTC}).ended("2026-11-22", late, false, late); got != "" {
		t.Errorf("a UTC day at 16:00: %q; want not ended", got)
	}
}

// mixedBits is parts.mixed of every stored part, by session and part.
func mixedBits(t *testing.T, s *Store) map[string]int {
	t.Helper()
	rows, err := s.wdb.Query(`SELECT session, part, mixed FROM parts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var session, part string
		var m int
		if err := rows.Scan(&session, &part, &m); err != nil {
			t.Fatal(err)
		}
		out[session+"/"+part] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
