package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestListPlanScans checks which lists scan: those whose candidates no probe lists completely.
func TestListPlanScans(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
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
			{"user agent", Filter{UserAgent: sqlmapUA}, false, true},
			{"ja3", Filter{JA3: fixtureJA3}, false, true},
			{"ja4 and status", Filter{JA4: fixtureJA4, Status: Status{Code: 403, Set: true}}, false, true},
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
	})
}

// TestListPlanScansManyCandidates checks that a list whose candidates each need a check of their
// request rows scans when there are more than checkParts of them.
func TestListPlanScansManyCandidates(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		var recs []record.Record
		for i := range 2 * checkParts {
			user := "many"
			if i < checkParts/2 {
				user = "few"
			}
			recs = append(recs, req(fmt.Sprintf("s_%04d", i), "2026-11-22", time.Duration(i)*time.Second,
				func(r *record.Request) { r.User = user }))
		}
		write(t, s, recs...)
		for _, tc := range []struct {
			name  string
			f     Filter
			scans bool
		}{
			{"many candidates, decided by their values", Filter{User: "many"}, false},
			{"many candidates to check", Filter{User: "many", Method: "GET"}, true},
			{"few candidates to check", Filter{User: "few", Method: "GET"}, false},
		} {
			p, err := s.PlanList(context.Background(), ListQuery{Filter: tc.f})
			if err != nil {
				t.Fatalf("%s: plan: %v", tc.name, err)
			}
			if p.Scans() != tc.scans {
				t.Errorf("%s: Scans() = %v; want %v", tc.name, p.Scans(), tc.scans)
			}
		}
	})
}

// TestListCanceled checks that a list whose context ended answers with the context's error,
// whether it scans or not.
func TestListCanceled(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
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
	})
}

// TestEachRequestPages checks that EachRequest reads a long part page by page without losing
// or repeating a request, and stops when fn fails.
func TestEachRequestPages(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
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
	})
}

// TestScanAgreesWithProbes lists many parts, page by page, once through the probes (with a
// probe limit that lists every value's parts) and once by scanning (probe limit 0), across
// many scan chunks and with time bounds, and wants the same pages.
func TestScanAgreesWithProbes(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		const parts = 3*scanMost + 100
		var recs []record.Record
		for i := range parts {
			session := fmt.Sprintf("s_%05d", i)
			at := time.Duration(i) * time.Second
			recs = append(recs, req(session, "2026-11-22", at, func(r *record.Request) {
				r.Method = []string{"GET", "POST", "DELETE"}[i%3]
				r.Status = []int{200, 404, 500, 200, 200}[i%5]
			}), req(session, "2026-11-22", at+time.Millisecond, func(r *record.Request) {
				r.Path = fmt.Sprintf("/api/items/%d", i%7)
			}))
		}
		write(t, s, recs...)
		for _, tc := range []struct {
			name string
			f    Filter
		}{
			{"common", Filter{Method: "GET"}},
			{"rare combination", Filter{Method: "DELETE", Status: Status{Code: 500, Set: true}}},
			{"no match", Filter{Method: "POST", Path: "/api/items/x"}},
			{"interval", Filter{From: base.Add(500 * time.Second), To: base.Add(3000 * time.Second), Status: Status{Class: 4, Set: true}}},
			{"path past the directory", Filter{Path: "/api/items/3"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var pages [2][]string
				for i, probe := range []int{parts, 0} {
					cursor := ""
					for {
						s.probe = probe
						p, err := s.PlanList(context.Background(), ListQuery{Filter: tc.f, Limit: 40, Cursor: cursor})
						if err != nil {
							t.Fatalf("plan: %v", err)
						}
						if probe == 0 && !p.Scans() {
							t.Fatalf("probe limit 0: Scans() = false")
						}
						page, err := p.Run(context.Background())
						if err != nil {
							t.Fatalf("run: %v", err)
						}
						pages[i] = append(pages[i], sessionIDs(page)...)
						if cursor = page.Next; cursor == "" {
							break
						}
					}
				}
				if diff := cmp.Diff(pages[0], pages[1]); diff != "" {
					t.Errorf("%s: the scan's parts differ from the probes' (-probes +scan):\n%s", tc.name, diff)
				}
			})
		}
	})
}
