package explore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/store"
)

func TestOverview(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver)})
		h.now = func() time.Time { return base.Add(time.Hour) }

		t.Run("default period", func(t *testing.T) {
			a := get(t, h, "/api/v1/overview", "")
			var o store.Overview
			if err := json.Unmarshal([]byte(a.body), &o); err != nil || a.status != 200 {
				t.Fatalf("overview: %d %v %s", a.status, err, a.body)
			}
			if !o.From.Equal(base.Add(-23*time.Hour)) || !o.To.Equal(base.Add(time.Hour)) || o.BucketSeconds != 15*60 {
				t.Errorf("period %s to %s by %d s; want the 24 hours before now by 15 minutes", o.From, o.To, o.BucketSeconds)
			}
			if o.Totals != (store.OverviewTotals{Requests: 3, Sessions: 2, Malicious: 1}) {
				t.Errorf("totals = %+v; want 3 requests of 2 sessions, 1 malicious", o.Totals)
			}
			if len(o.RoutesByMalicious) != 1 || o.RoutesByMalicious[0].Route != "/api/search" || len(o.RoutesByErrors) != 0 {
				t.Errorf("routes = %+v / %+v; want /api/search by malicious, none by errors", o.RoutesByMalicious, o.RoutesByErrors)
			}
			if len(o.TopSessions) != 1 || o.TopSessions[0].Session != "s_aaaa" || o.SessionsBy != store.ByMalicious {
				t.Errorf("top sessions = %+v by %s; want s_aaaa by malicious", o.TopSessions, o.SessionsBy)
			}
			if o.NewUsers.Total != 1 || o.NewUsers.Items[0].Value != "alice" || o.NewFingerprints.Total != 2 {
				t.Errorf("new users %+v, fingerprints %+v; want alice and two user agents", o.NewUsers, o.NewFingerprints)
			}
		})

		t.Run("given period", func(t *testing.T) {
			a := get(t, h, "/api/v1/overview?from=2026-11-22T10:00:30Z&to=2026-11-22T10:05:00Z&sessions_by=malicious", "")
			var o store.Overview
			if err := json.Unmarshal([]byte(a.body), &o); err != nil || a.status != 200 {
				t.Fatalf("overview: %d %v %s", a.status, err, a.body)
			}
			if o.Totals.Requests != 1 || o.BucketSeconds != 60 || len(o.Buckets) != 5 || o.Buckets[1].Requests != 1 {
				t.Errorf("overview = %+v; want the request at 10:01 alone, in the second of 5 one-minute buckets", o)
			}
		})

		t.Run("riskiest sessions", func(t *testing.T) {
			a := get(t, h, "/api/v1/overview?sessions_by=risk", "")
			var o store.Overview
			if err := json.Unmarshal([]byte(a.body), &o); err != nil || a.status != 200 {
				t.Fatalf("overview: %d %v %s", a.status, err, a.body)
			}
			// s_aaaa's malicious 403 makes it risky; s_bbbb's one 200 does not.
			if o.SessionsBy != store.ByRisk || len(o.TopSessions) != 1 || o.TopSessions[0].Session != "s_aaaa" ||
				o.TopSessions[0].Risk <= 0 || o.TopSessions[0].Malicious != 1 || o.TopSessions[0].User != "alice" {
				t.Errorf("top sessions = %+v by %s; want s_aaaa alone, by risk, with its risk and malicious request", o.TopSessions, o.SessionsBy)
			}
			if !strings.Contains(a.body, `"sessions_by":"risk"`) || !strings.Contains(a.body, `"risk":`) {
				t.Errorf("answer %s; want sessions_by risk and each session's risk", a.body)
			}
		})

		for _, tc := range []struct{ name, path, msg string }{
			{"reversed", "/api/v1/overview?from=2026-11-22T11:00:00Z&to=2026-11-22T10:00:00Z",
				`to (2026-11-22T10:00:00Z) is before from (2026-11-22T11:00:00Z); swap them`},
			{"empty", "/api/v1/overview?from=2026-11-22T10:00:00Z&to=2026-11-22T10:00:00Z",
				`from (2026-11-22T10:00:00Z) is not before to (2026-11-22T10:00:00Z); give a period, e.g. from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z`},
			{"too long", "/api/v1/overview?from=2024-11-22T10:00:00Z&to=2026-11-22T10:00:00Z",
				`the period from 2024-11-22T10:00:00Z to 2026-11-22T10:00:00Z is longer than 366 days; give a shorter one`},
			{"order", "/api/v1/overview?sessions_by=errors", `sessions_by "errors" is not an order of sessions; use sessions_by=malicious or sessions_by=risk`},
			{"unknown", "/api/v1/overview?user=alice", `unknown filter "user"; the filters here are from, to, sessions_by`},
			{"time", "/api/v1/overview?to=now", `to "now" is not an RFC 3339 time; use e.g. 2026-11-22T10:00:00Z`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := get(t, h, tc.path, "")
				if a.status != 400 || errorOf(t, a) != tc.msg {
					t.Errorf("%s: %d %s; want 400 %q", tc.path, a.status, a.body, tc.msg)
				}
			})
		}
	})
}

func TestOverviewToken(t *testing.T) {
	t.Parallel()
	h := New(Options{Store: testStore(t, store.DriverSQLite), Token: "s3cret-token"})
	if a := get(t, h, "/api/v1/overview", ""); a.status != 401 {
		t.Errorf("overview without token: %d; want 401", a.status)
	}
	if a := get(t, h, "/api/v1/overview", "s3cret-token"); a.status != 200 {
		t.Errorf("overview with token: %d %s; want 200", a.status, a.body)
	}
}
