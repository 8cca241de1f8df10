package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// Parts carry the risk of their requests' signals at their latest request, whatever batches
// brought them, and the list keeps the parts at or above min_risk.
func TestRiskScoreAndFilter(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		status := func(c int) func(*record.Request) { return func(r *record.Request) { r.Status = c } }
		// s_risky: two 401s and a malicious request within a minute: 10 + 10 + 40 = 60.
		risky := []record.Record{
			req("s_risky", "2026-11-22", 0, status(401)),
			req("s_risky", "2026-11-22", 30*time.Second, func(r *record.Request) {
				r.Malicious, r.Attack = true, &record.Attack{Source: "header", Types: []string{"sqli"}}
			}),
			req("s_risky", "2026-11-22", 40*time.Second),
			req("s_risky", "2026-11-22", 0, status(401), func(r *record.Request) { r.RequestID = "other" }),
		}
		// s_faded: a 403, then 30 minutes (three half-lives) of quiet requests: 10 → 1.25.
		faded := []record.Record{
			req("s_faded", "2026-11-22", 0, status(403)),
			req("s_faded", "2026-11-22", 30*time.Minute),
		}
		calm := req("s_calm", "2026-11-22", time.Minute)
		// Batches in another order and grouping than the requests' times.
		write(t, s, risky[2], faded[1])
		write(t, s, risky[0], calm)
		write(t, s, risky[3], risky[1], faded[0])

		v, err := s.Part(ctx, "s_risky", "2026-11-22", PartQuery{})
		if err != nil {
			t.Fatal(err)
		}
		// At the last request (40 s) the points are a little less than 60.
		want := []record.RiskReason{{Signal: "malicious", Points: 39.5}, {Signal: "denied", Points: 19.1}}
		if v.Session.Risk != 59 || !slices.Equal(v.Session.RiskReasons, want) {
			t.Fatalf("risky part: risk %d %v, want 59 %v", v.Session.Risk, v.Session.RiskReasons, want)
		}
		v, err = s.Part(ctx, "s_faded", "2026-11-22", PartQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if v.Session.Risk != 1 || len(v.Session.RiskReasons) != 1 || v.Session.RiskReasons[0].Points != 1.3 {
			t.Fatalf("faded part: risk %d %v, want 1 with denied 1.3", v.Session.Risk, v.Session.RiskReasons)
		}
		for _, c := range []struct {
			min  int
			want []string
		}{
			{0, []string{"s_faded/2026-11-22", "s_calm/2026-11-22", "s_risky/2026-11-22"}},
			{1, []string{"s_faded/2026-11-22", "s_risky/2026-11-22"}},
			{50, []string{"s_risky/2026-11-22"}},
			{60, []string{}},
		} {
			page, err := s.List(ctx, ListQuery{Filter: Filter{MinRisk: c.min}})
			if err != nil {
				t.Fatal(err)
			}
			if got := sessionIDs(page); !slices.Equal(got, c.want) {
				t.Errorf("min_risk %d: %v, want %v", c.min, got, c.want)
			}
		}
		// With a request filter as well.
		page, err := s.List(ctx, ListQuery{Filter: Filter{MinRisk: 50, Status: Status{Set: true, Code: 401}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := sessionIDs(page); !slices.Equal(got, []string{"s_risky/2026-11-22"}) {
			t.Errorf("min_risk 50 and status 401: %v", got)
		}
	})
}
