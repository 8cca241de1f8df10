package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestPartTimeline checks the timeline and transitions of a part view on both drivers: they
// describe every request of the part whatever the filters and the page, in time order.
func TestPartTimeline(t *testing.T) {
	t.Parallel()
	route := func(r string, status int) func(*record.Request) {
		return func(q *record.Request) { q.Path, q.Route, q.Status = r, r, status }
	}
	forEachDriver(t, func(t *testing.T, s *Store) {
		// Written out of order: the store orders by time.
		write(t, s,
			req("s_t", "2026-11-22", 3*time.Minute, route("/cart", 500)),
			req("s_t", "2026-11-22", 0, route("/login", 200)),
			req("s_t", "2026-11-22", 10*time.Second, route("/items", 200)),
			req("s_t", "2026-11-22", 20*time.Second, route("/cart", 302)),
			req("s_t", "2026-11-22", 30*time.Second, route("/items", 404)),
			req("s_t", "2026-11-22", 40*time.Second, route("/cart", 0), func(r *record.Request) { r.Malicious = true }),
			req("s_t", "2026-11-22", 2*time.Minute+30*time.Second, route("/items", 200)),
		)
		v, err := s.Part(context.Background(), "s_t", "2026-11-22", PartQuery{Limit: 2, Filter: Filter{Method: "GET"}})
		if err != nil {
			t.Fatal(err)
		}
		tl, tr := v.Timeline, v.Transitions
		if !tl.From.Equal(base) || !tl.To.Equal(base.Add(3*time.Minute)) {
			t.Errorf("timeline from %v to %v; want the first and last requests", tl.From, tl.To)
		}
		// Three minutes in 2 s buckets: 91 of them.
		if tl.BucketMS != 2000 || len(tl.Buckets) != 91 {
			t.Errorf("%d buckets of %d ms; want 91 of 2000", len(tl.Buckets), tl.BucketMS)
		}
		want := map[int]Bucket{
			0: {Requests: 1, Classes: [6]int{0, 0, 1}}, 5: {Requests: 1, Classes: [6]int{0, 0, 1}},
			10: {Requests: 1, Classes: [6]int{0, 0, 0, 1}}, 15: {Requests: 1, Classes: [6]int{0, 0, 0, 0, 1}},
			20: {Requests: 1, Malicious: 1, Classes: [6]int{1}}, 75: {Requests: 1, Classes: [6]int{0, 0, 1}},
			90: {Requests: 1, Classes: [6]int{0, 0, 0, 0, 0, 1}},
		}
		for i, b := range tl.Buckets {
			if b != want[i] {
				t.Errorf("bucket %d = %+v; want %+v", i, b, want[i])
			}
		}
		wantMarks := []Mark{{0, 200, false, "/login"}, {10000, 200, false, "/items"}, {20000, 302, false, "/cart"},
			{30000, 404, false, "/items"}, {40000, 0, true, "/cart"}, {150000, 200, false, "/items"}, {180000, 500, false, "/cart"}}
		if diff := cmp.Diff(wantMarks, tl.Marks); diff != "" {
			t.Errorf("marks differ (-want +got):\n%s", diff)
		}
		if tl.PeakPerMinute != 5 || fmt.Sprintf("%.3f", tl.PerMinute) != "2.333" {
			t.Errorf("peak %d, mean %.3f a minute; want 5 and 7/3", tl.PeakPerMinute, tl.PerMinute)
		}
		wantTr := &Transitions{Total: 6, Top: []Transition{{"/items", "/cart", 3}, {"/cart", "/items", 2}, {"/login", "/items", 1}}}
		if diff := cmp.Diff(wantTr, tr); diff != "" {
			t.Errorf("transitions differ (-want +got):\n%s", diff)
		}
	})
}

// TestTimelineBounds checks that a part of many requests and routes gives a bounded view: no
// marks, at most maxTimelineBuckets buckets, maxTransitions steps and the rest counted.
func TestTimelineBounds(t *testing.T) {
	t.Parallel()
	const n = maxMarks + 100
	b := newTimeline(0, int64(20*time.Hour/time.Millisecond), n)
	for i := range n {
		b.add(int64(i)*int64(2*time.Minute/time.Millisecond), 200, false, fmt.Sprintf("/r/%d", i%70))
	}
	tl, tr := b.done()
	if tl.Marks != nil || len(tl.Buckets) > maxTimelineBuckets || tl.BucketMS != int64(15*time.Minute/time.Millisecond) {
		t.Errorf("%d marks, %d buckets of %d ms; want none, at most %d of 15 minutes", len(tl.Marks), len(tl.Buckets), tl.BucketMS, maxTimelineBuckets)
	}
	if len(tr.Top) != maxTransitions || tr.More != 70-maxTransitions || tr.Total != n-1 {
		t.Errorf("transitions: %d listed, %d more, %d in all; want %d, %d, %d", len(tr.Top), tr.More, tr.Total, maxTransitions, 70-maxTransitions, n-1)
	}
	listed := 0
	for _, x := range tr.Top {
		listed += x.Count
	}
	if listed+tr.MoreCount != tr.Total {
		t.Errorf("listed %d + more %d steps != %d", listed, tr.MoreCount, tr.Total)
	}

	// Past maxTransitionKeys distinct steps, the others are counted apart.
	b = newTimeline(0, 1000, 2*maxTransitionKeys+10)
	for i := range 2*maxTransitionKeys + 10 {
		b.add(int64(i%1000), 200, false, fmt.Sprintf("/%d", i))
	}
	_, tr = b.done()
	if len(b.steps) != maxTransitionKeys || tr.Untracked != 2*maxTransitionKeys+9-maxTransitionKeys {
		t.Errorf("%d steps kept, %d untracked; want %d kept and the rest untracked", len(b.steps), tr.Untracked, maxTransitionKeys)
	}
}

// BenchmarkPartView measures the part view of one part of n requests on SQLite, whose one
// pass over the part's rows gives the statistics, the timeline and the transitions.
func BenchmarkPartView(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("requests=%d", n), func(b *testing.B) {
			s := openTest(b, nil)
			recs := make([]record.Record, 0, n)
			for i := range n {
				recs = append(recs, req("s_v", "2026-11-22", time.Duration(i)*3*time.Second, func(r *record.Request) {
					r.Route = fmt.Sprintf("/api/r%d", i%37)
					r.Status = []int{200, 200, 302, 404, 500}[i%5]
				}))
			}
			for len(recs) > 0 {
				k := min(len(recs), 1000)
				write(b, s, recs[:k]...)
				recs = recs[k:]
			}
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.Part(ctx, "s_v", "2026-11-22", PartQuery{Limit: 100}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
