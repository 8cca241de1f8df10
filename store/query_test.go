package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestListPlanScans checks which lists scan: those whose candidates no probe lists completely.
func TestListPlanScans(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	fixture(t, s)
	tests := []struct {
		name string
		f    Filter
		// scans with the default probe limit, and with a limit every value exceeds
		scans, scansUnprobed bool
	}{
		{"no filter", Filter{}, false, false},
		{"user", Filter{User: "alice"}, false, true},
		{"absent value", Filter{User: "mallory"}, false, false},
		{"request id", Filter{RequestID: "attack-1"}, false, true},
		{"common values", Filter{Method: "GET", Status: Status{Class: 2, Set: true}}, false, true},
		{"path longer than its directory", Filter{Path: "/api/items/x"}, false, true},
		{"time interval alone", Filter{From: base, To: base.Add(time.Hour)}, true, true},
		{"time interval and user", Filter{From: base, User: "alice"}, false, true},
	}
	for _, probe := range []int{probeParts, 0} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/probe=%d", tc.name, probe), func(t *testing.T) {
				s.probe = probe
				want := tc.scans
				if probe == 0 {
					want = tc.scansUnprobed
				}
				p, err := s.PlanList(context.Background(), ListQuery{Filter: tc.f})
				if err != nil {
					t.Fatalf("plan: %v", err)
				}
				if p.Scans() != want {
					t.Errorf("%s: Scans() = %v; want %v", tc.name, p.Scans(), want)
				}
			})
		}
	}
}

// TestListCanceled checks that a list whose context ended answers with the context's error,
// whether it scans or not.
func TestListCanceled(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	fixture(t, s)
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"plain", Filter{}},
		{"scan", Filter{From: base}},
	} {
		p, err := s.PlanList(context.Background(), ListQuery{Filter: tc.f})
		if err != nil {
			t.Fatalf("%s: plan: %v", tc.name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: run with a canceled context: %v; want context.Canceled", tc.name, err)
		}
	}
}

// TestEachRequestPages checks that EachRequest reads a long part page by page without losing
// or repeating a request, and stops when fn fails.
func TestEachRequestPages(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	const n = 2*eachPage + 7
	var recs []record.Record
	for i := range n {
		recs = append(recs, req("s_long", "2026-11-22", time.Duration(i/2)*time.Second, func(r *record.Request) {
			r.RequestID = fmt.Sprintf("r%04d", i)
			if i%2 == 1 {
				r.Status = 404
			}
		}))
	}
	write(t, s, recs...)
	var got []string
	err := s.EachRequest(context.Background(), "s_long", "2026-11-22", Filter{Status: Status{Code: 404, Set: true}},
		func(r *record.Request) error {
			got = append(got, r.RequestID)
			return nil
		})
	if err != nil {
		t.Fatalf("each request: %v", err)
	}
	if len(got) != n/2 {
		t.Fatalf("each request gave %d requests; want %d", len(got), n/2)
	}
	for i, id := range got {
		if want := fmt.Sprintf("r%04d", 2*i+1); id != want {
			t.Fatalf("request %d is %s; want %s, in time order without gaps", i, id, want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err = s.EachRequest(context.Background(), "s_long", "2026-11-22", Filter{}, func(*record.Request) error {
		calls++
		if calls == eachPage+1 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != eachPage+1 {
		t.Errorf("fn failing on call %d: err %v after %d calls; want its error at once", eachPage+1, err, calls)
	}
}
