package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/record"
)

// TestListValueEdges covers the filters whose part values only narrow the parts: values cut
// at maxValueLen, path prefixes longer and shorter than the stored directory, the shape of
// method, status and route, and statuses outside every class.
func TestListValueEdges(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("u", maxValueLen)
	forEachDriver(t, func(t *testing.T, s *Store) {
		write(t, s,
			req("s_long1", "2026-11-22", 0, func(r *record.Request) { r.User = long + "1" }),
			req("s_long2", "2026-11-22", time.Second, func(r *record.Request) { r.User = long + "2" }),
			req("s_ord17", "2026-11-22", 2*time.Second, func(r *record.Request) { r.Path = "/api/orders/17" }),
			req("s_ord2", "2026-11-22", 3*time.Second, func(r *record.Request) { r.Path = "/api/orders/2" }),
			req("s_short", "2026-11-22", 4*time.Second, func(r *record.Request) { r.Path = "/a" }),
			// A failed POST and a successful GET on the route: the shape must not mix them.
			req("s_mix", "2026-11-22", 5*time.Second, func(r *record.Request) { r.Method, r.Status, r.Route = "POST", 200, "/api/cart" }),
			req("s_mix", "2026-11-22", 6*time.Second, func(r *record.Request) { r.Method, r.Status, r.Route = "GET", 500, "/api/cart" }),
			req("s_fail", "2026-11-22", 7*time.Second, func(r *record.Request) { r.Method, r.Status, r.Route = "POST", 500, "/api/cart" }),
			req("s_odd", "2026-11-22", 8*time.Second, func(r *record.Request) { r.Status = 5000 }),
			// A route holding the shape separator must not pose as another route's shape.
			req("s_nul", "2026-11-22", 9*time.Second, func(r *record.Request) { r.Route = "/api/cart\x00500" }),
		)
		tests := []struct {
			name string
			f    Filter
			want []string
		}{
			{"user longer than a stored value", Filter{User: long + "2"}, []string{"s_long2"}},
			{"user cut to the stored length", Filter{User: long}, nil},
			{"path longer than its directory", Filter{Path: "/api/orders/1"}, []string{"s_ord17"}},
			{"path shorter than its directory", Filter{Path: "/api/ord"}, []string{"s_ord2", "s_ord17"}},
			{"path without a directory", Filter{Path: "/a"}, []string{"s_nul", "s_odd", "s_fail", "s_mix", "s_short", "s_ord2", "s_ord17", "s_long2", "s_long1"}},
			{"method, status and route", Filter{Method: "POST", Status: Status{Code: 500, Set: true}, Route: "/api/cart"}, []string{"s_fail"}},
			{"method and status class", Filter{Method: "POST", Status: Status{Class: 5, Set: true}}, []string{"s_fail"}},
			{"status class leaves out other numbers", Filter{Status: Status{Class: 5, Set: true}}, []string{"s_fail", "s_mix"}},
			{"method and route", Filter{Method: "POST", Route: "/api/cart"}, []string{"s_fail", "s_mix"}},
			{"method, status class and route", Filter{Method: "GET", Status: Status{Class: 5, Set: true}, Route: "/api/cart"}, []string{"s_mix"}},
			{"route with a separator", Filter{Method: "GET", Route: "/api/cart\x00500"}, []string{"s_nul"}},
		}
		for _, probe := range []int{probeParts, 1, 0} {
			for _, tc := range tests {
				t.Run(fmt.Sprintf("%s/probe=%d", tc.name, probe), func(t *testing.T) {
					s.probe = probe
					p, err := s.List(context.Background(), ListQuery{Filter: tc.f})
					if err != nil {
						t.Fatalf("list: %v", err)
					}
					var got []string
					for _, r := range p.Sessions {
						got = append(got, r.Session)
					}
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("%s: parts differ (-want +got):\n%s", tc.name, diff)
					}
				})
			}
		}
	})
}

// TestMigrateFromV1 opens a database written by schema version 1 and finds its parts through
// the part values the migration derived from the request rows.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), ckWriterFrames))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrations[0](ctx, tx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"PRAGMA user_version = 1",
		`INSERT INTO parts (id, session, part, first_seen, last_seen, rows) VALUES (1, 's_v1', '2026-11-22', 1000, 61000, 2)`,
		`INSERT INTO requests (part_id, time, request_id, method, host, path, route, status, client_ip, user, role,
			malicious, flows, attack_types, record) VALUES
			(1, 1000, 'r1', 'GET', 'shop.example.com', '/api/items/3', '/api/items/{id}', 200, '203.0.113.7', 'alice', '', 0, '', '', '{}'),
			(1, 61000, 'r2', 'POST', 'shop.example.com', '/api/pay', '/api/pay', 502, '203.0.113.7', 'alice', '', 1, 'billing,auth', 'sqli', '{}')`,
		`INSERT INTO request_flows (flow, part_id, request) VALUES ('billing', 1, 2), ('auth', 1, 2)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(Options{Dir: dir, NoRetentionJob: true})
	if err != nil {
		t.Fatalf("open a version 1 database: %v", err)
	}
	defer s.Close(ctx)
	for _, tc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"user", Filter{User: "alice"}, 1},
		{"flow", Filter{Flow: "auth"}, 1},
		{"malicious", Filter{Malicious: true}, 1},
		{"path", Filter{Path: "/api/items/"}, 1},
		{"shape", Filter{Method: "POST", Status: Status{Code: 502, Set: true}, Route: "/api/pay"}, 1},
		{"one request must match", Filter{Method: "GET", Status: Status{Class: 5, Set: true}}, 0},
		{"interval", Filter{From: time.UnixMilli(30000), To: time.UnixMilli(70000)}, 1},
		{"interval between requests", Filter{From: time.UnixMilli(2000), To: time.UnixMilli(60000)}, 0},
	} {
		p, err := s.List(ctx, ListQuery{Filter: tc.f})
		if err != nil {
			t.Fatalf("%s: list: %v", tc.name, err)
		}
		if len(p.Sessions) != tc.want {
			t.Errorf("%s: %d parts after migrating; want %d", tc.name, len(p.Sessions), tc.want)
		}
	}
}
