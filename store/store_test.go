package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// The fixture's client fingerprints.
const (
	sqlmapUA   = "sqlmap/1.7 (\"quoted\" <x>)"
	fixtureJA3 = "e7d705a3286e19ea42f587b344ee6865"
	fixtureJA4 = "t13d1516h2_8daaf6152771_b186095e22b6"
)

// fixture writes four parts:
//
//	s_a/2026-11-22  alice (admin): GET /api/items 200, POST /api/login 401 and 200 (auth)
//	s_b/2026-11-22  bob: GET /api/orders/1 500 from another IP and host (with a parameter
//	                named user_agent), a malicious GET 403 from sqlmap with JA3 and JA4
//	s_c/2026-11-22  anonymous: GET /static/app.js 304 with the same JA3
//	s_a/2026-11-23  alice: GET /api/items 200 the next day
//
// Newest last_seen first they list as s_a/23, s_c, s_b, s_a/22.
func fixture(t *testing.T, s *Store) {
	t.Helper()
	alice := func(r *record.Request) { r.User, r.Role = "alice", "admin" }
	login := func(status int) func(*record.Request) {
		return func(r *record.Request) {
			r.Method, r.Path, r.Route, r.Status, r.Flows = "POST", "/api/login", "/api/login", status, []string{"auth"}
		}
	}
	bob := func(r *record.Request) {
		r.User, r.Role, r.ClientIP, r.Host = "bob", "user", "198.51.100.2", "admin.example.com"
	}
	write(t, s,
		req("s_a", "2026-11-22", 0, alice),
		req("s_a", "2026-11-22", time.Minute, alice, login(401)),
		req("s_a", "2026-11-22", 2*time.Minute, alice, login(200)),
		req("s_b", "2026-11-22", 5*time.Minute, bob, func(r *record.Request) {
			r.Path, r.Route, r.Status = "/api/orders/1", "/api/orders/{id}", 500
			r.Params = map[string]string{"sid": "hmac:0011", "user_agent": sqlmapUA}
		}),
		req("s_b", "2026-11-22", 6*time.Minute, bob, func(r *record.Request) {
			r.Path, r.Route, r.Status, r.Malicious = "/api/search", "/api/search", 403, true
			r.UserAgent, r.JA3, r.JA4 = sqlmapUA, fixtureJA3, fixtureJA4
			r.RequestID = "attack-1"
			r.Attack = &record.Attack{Source: "header", Types: []string{"sqli"}}
		}),
		req("s_c", "2026-11-22", 10*time.Minute, func(r *record.Request) {
			r.Path, r.Route, r.Status = "/static/app.js", "/static/app.js", 304
			r.JA3 = fixtureJA3
		}),
	)
	write(t, s, req("s_a", "2026-11-23", 24*time.Hour, alice))
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	const (
		a22 = "s_a/2026-11-22"
		a23 = "s_a/2026-11-23"
		b   = "s_b/2026-11-22"
		c   = "s_c/2026-11-22"
	)
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"no filter", Filter{}, []string{a23, c, b, a22}},
		{"user", Filter{User: "alice"}, []string{a23, a22}},
		{"role", Filter{Role: "user"}, []string{b}},
		{"flow", Filter{Flow: "auth"}, []string{a22}},
		{"ip", Filter{IP: "198.51.100.2"}, []string{b}},
		{"request id", Filter{RequestID: "attack-1"}, []string{b}},
		{"method", Filter{Method: "POST"}, []string{a22}},
		{"status code", Filter{Status: Status{Code: 304, Set: true}}, []string{c}},
		{"status class 4xx", Filter{Status: Status{Class: 4, Set: true}}, []string{b, a22}},
		{"status class 5xx", Filter{Status: Status{Class: 5, Set: true}}, []string{b}},
		{"host", Filter{Host: "admin.example.com"}, []string{b}},
		{"path prefix", Filter{Path: "/static"}, []string{c}},
		{"path prefix of several", Filter{Path: "/api/"}, []string{a23, b, a22}},
		{"route", Filter{Route: "/api/orders/{id}"}, []string{b}},
		{"malicious", Filter{Malicious: true}, []string{b}},
		{"interval", Filter{From: base.Add(4 * time.Minute), To: base.Add(7 * time.Minute)}, []string{b}},
		{"interval edges inclusive", Filter{From: base.Add(2 * time.Minute), To: base.Add(5 * time.Minute)}, []string{b, a22}},
		{"from only", Filter{From: base.Add(7 * time.Minute)}, []string{a23, c}},
		{"to only", Filter{To: base.Add(time.Minute)}, []string{a22}},
		{"user and status", Filter{User: "alice", Status: Status{Class: 4, Set: true}}, []string{a22}},
		{"user, method and status", Filter{User: "alice", Method: "POST", Status: Status{Code: 200, Set: true}}, []string{a22}},
		{"one request must match every filter", Filter{Method: "POST", Status: Status{Code: 500, Set: true}}, nil},
		{"user and interval", Filter{User: "alice", From: base.Add(time.Hour)}, []string{a23}},
		{"flow and malicious", Filter{Flow: "auth", Malicious: true}, nil},
		{"nothing matches", Filter{User: "mallory"}, nil},
		{"user agent", Filter{UserAgent: sqlmapUA}, []string{b}},
		{"user agent many parts share", Filter{UserAgent: "test/1.0"}, []string{a23, c, b, a22}},
		{"user agent nobody sent", Filter{UserAgent: "curl/8.0"}, nil},
		{"ja3", Filter{JA3: fixtureJA3}, []string{c, b}},
		{"ja4", Filter{JA4: fixtureJA4}, []string{b}},
		{"user agent and status of one request", Filter{UserAgent: sqlmapUA, Status: Status{Code: 403, Set: true}}, []string{b}},
		{"a parameter named user_agent is not the user agent", Filter{UserAgent: sqlmapUA, Status: Status{Code: 500, Set: true}}, nil},
		{"ja3 and path", Filter{JA3: fixtureJA3, Path: "/static"}, []string{c}},
		{"ja4 and ja3 and user agent", Filter{JA4: fixtureJA4, JA3: fixtureJA3, UserAgent: sqlmapUA}, []string{b}},
		{"ja4 and another request's user agent", Filter{JA4: fixtureJA4, UserAgent: "test/1.0"}, nil},
	}
	forEachDriver(t, func(t *testing.T, s *Store) {
		fixture(t, s)
		for _, probe := range []int{probeParts, 0} {
			for _, tc := range tests {
				t.Run(fmt.Sprintf("%s/probe=%d", tc.name, probe), func(t *testing.T) {
					s.probe = probe
					p, err := s.List(context.Background(), ListQuery{Filter: tc.f})
					if err != nil {
						t.Fatalf("list: %v", err)
					}
					got := sessionIDs(p)
					if len(got) == 0 {
						got = nil
					}
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("%s: parts differ (-want +got):\n%s", tc.name, diff)
					}
				})
			}
		}
	})
}

func TestPartDetail(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		fixture(t, s)
		ctx := context.Background()
		tests := []struct {
			name string
			f    Filter
			want []string // request ids
		}{
			{"all in order", Filter{}, []string{"s_a-0s", "s_a-1m0s", "s_a-2m0s"}},
			{"method", Filter{Method: "POST"}, []string{"s_a-1m0s", "s_a-2m0s"}},
			{"status", Filter{Status: Status{Code: 401, Set: true}}, []string{"s_a-1m0s"}},
			{"interval keeps only its requests", Filter{From: base.Add(30 * time.Second), To: base.Add(90 * time.Second)}, []string{"s_a-1m0s"}},
			{"flow", Filter{Flow: "auth"}, []string{"s_a-1m0s", "s_a-2m0s"}},
			{"request id", Filter{RequestID: "s_a-2m0s"}, []string{"s_a-2m0s"}},
			{"path", Filter{Path: "/api/log"}, []string{"s_a-1m0s", "s_a-2m0s"}},
			{"route", Filter{Route: "/api/items"}, []string{"s_a-0s"}},
			{"ip", Filter{IP: "192.0.2.1"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				v, err := s.Part(ctx, "s_a", "2026-11-22", PartQuery{Filter: tc.f})
				if err != nil {
					t.Fatalf("part: %v", err)
				}
				var got []string
				for _, r := range decodeReqs(t, v.Requests) {
					got = append(got, r.RequestID)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: requests differ (-want +got):\n%s", tc.name, diff)
				}
				if v.Stats.Requests != 3 {
					t.Errorf("%s: stats cover %d requests; they must describe the whole part (3)", tc.name, v.Stats.Requests)
				}
			})
		}

		t.Run("stats", func(t *testing.T) {
			t.Parallel()
			v, err := s.Part(ctx, "s_b", "2026-11-22", PartQuery{})
			if err != nil {
				t.Fatalf("part: %v", err)
			}
			want := Stats{
				Requests:    2,
				Malicious:   1,
				Methods:     []Count{{Value: "GET", Count: 2}},
				Statuses:    []Count{{Value: "403", Count: 1}, {Value: "500", Count: 1}},
				ClientIPs:   []Count{{Value: "198.51.100.2", Count: 2}},
				Flows:       []Count{},
				Routes:      []Count{{Value: "/api/orders/{id}", Count: 1}, {Value: "/api/search", Count: 1}},
				AttackTypes: []Count{{Value: "sqli", Count: 1}},
			}
			if diff := cmp.Diff(want, v.Stats); diff != "" {
				t.Errorf("stats differ (-want +got):\n%s", diff)
			}
			a, err := s.Part(ctx, "s_a", "2026-11-22", PartQuery{})
			if err != nil {
				t.Fatalf("part: %v", err)
			}
			if diff := cmp.Diff([]Count{{Value: "auth", Count: 2, Share: 2.0 / 3}}, a.Stats.Flows); diff != "" {
				t.Errorf("flow shares differ (-want +got):\n%s", diff)
			}
			if a.Session.Requests != 3 || a.Session.User != "alice" || a.Session.Methods["POST"] != 2 {
				t.Errorf("part record = %+v; want 3 requests by alice with 2 POST", a.Session)
			}
		})

		t.Run("unknown part", func(t *testing.T) {
			t.Parallel()
			if _, err := s.Part(ctx, "s_zz", "2026-11-22", PartQuery{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown part: err = %v; want ErrNotFound", err)
			}
		})

		t.Run("request lookup", func(t *testing.T) {
			t.Parallel()
			fd, err := s.Request(ctx, "attack-1")
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if fd.Session != "s_b" || fd.Part != "2026-11-22" {
				t.Errorf("attack-1 found in %s/%s; want s_b/2026-11-22", fd.Session, fd.Part)
			}
			if _, err := s.Request(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown request: err = %v; want ErrNotFound", err)
			}
		})

		t.Run("paging through requests", func(t *testing.T) {
			t.Parallel()
			var got []string
			cursor := ""
			for range 10 {
				v, err := s.Part(ctx, "s_a", "2026-11-22", PartQuery{Limit: 2, Cursor: cursor})
				if err != nil {
					t.Fatalf("part: %v", err)
				}
				for _, r := range decodeReqs(t, v.Requests) {
					got = append(got, r.RequestID)
				}
				if cursor = v.Next; cursor == "" {
					break
				}
			}
			if diff := cmp.Diff([]string{"s_a-0s", "s_a-1m0s", "s_a-2m0s"}, got); diff != "" {
				t.Errorf("paged requests differ (-want +got):\n%s", diff)
			}
		})
	})
}

func TestEachRequestRoundTrip(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		in := req("s_x", "2026-11-22", 0, func(r *record.Request) {
			r.User, r.Flows, r.Malicious, r.Partial = "zoë", []string{"auth", "billing"}, true, true
			r.DurationMS, r.RequestBytes, r.ResponseBytes = 12.5, 42, 4096
			r.Attack = &record.Attack{Source: "metadata", Types: []string{"sqli", "xss"}, RuleIDs: []string{"942100"},
				Headers: map[string]string{"user-agent": "x"}, Body: "a=' OR 1=1--", BodyTruncated: true}
		})
		write(t, s, in)
		var got []*record.Request
		err := s.EachRequest(context.Background(), "s_x", "2026-11-22", Filter{}, func(r *record.Request) error {
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatalf("each request: %v", err)
		}
		if diff := cmp.Diff([]*record.Request{in}, got, cmp.Comparer(func(a, b record.Time) bool { return a.Equal(b.Time) })); diff != "" {
			t.Errorf("stored request differs (-want +got):\n%s", diff)
		}
		if err := s.EachRequest(context.Background(), "s_x", "2026-11-30", Filter{}, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown part: err = %v; want ErrNotFound", err)
		}
	})
}

func TestPaginationStable(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		var recs []record.Record
		var want []string
		// 60 parts; every three share one last_seen, so the order falls back on session and part.
		for i := range 60 {
			sess := fmt.Sprintf("s_%02d", i)
			recs = append(recs, req(sess, "2026-11-22", time.Duration(i/3)*time.Second, func(r *record.Request) {
				if i%2 == 0 {
					r.User = "even"
				}
			}))
		}
		write(t, s, recs...)
		for i := 59; i >= 0; i-- {
			want = append(want, fmt.Sprintf("s_%02d/2026-11-22", i))
		}
		for _, tc := range []struct {
			name  string
			f     Filter
			want  []string
			probe int
		}{
			{"unfiltered", Filter{}, want, probeParts},
			{"filtered through the index", Filter{User: "even"}, evens(want), probeParts},
			{"filtered walking parts", Filter{User: "even"}, evens(want), 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s.probe = tc.probe
				var got []string
				cursor := ""
				for range 100 {
					p, err := s.List(context.Background(), ListQuery{Filter: tc.f, Limit: 7, Cursor: cursor})
					if err != nil {
						t.Fatalf("list: %v", err)
					}
					got = append(got, sessionIDs(p)...)
					if cursor = p.Next; cursor == "" {
						break
					}
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: pages differ from one ordered listing (-want +got):\n%s", tc.name, diff)
				}
			})
		}
		if _, err := s.List(context.Background(), ListQuery{Cursor: "not-a-cursor"}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("bad cursor: err = %v; want ErrBadCursor", err)
		}
	})
}

func evens(ids []string) []string {
	var out []string
	for _, id := range ids {
		var n int
		fmt.Sscanf(id, "s_%02d", &n)
		if n%2 == 0 {
			out = append(out, id)
		}
	}
	return out
}

func TestWriteRejectsBadRecords(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		err := s.Write(context.Background(), []record.Record{
			req("s_ok", "2026-11-22", 0),
			&record.Request{Kind: record.KindRequest},
			req("s_ok", "2026-11-22", time.Second),
		})
		pe, ok := errors.AsType[*sinks.PartialError](err)
		if !ok || pe.Failed != 1 || !sinks.IsPermanent(err) {
			t.Fatalf("write with one bad record: err = %v; want a permanent PartialError with 1 failed", err)
		}
		v, err := s.Part(context.Background(), "s_ok", "2026-11-22", PartQuery{})
		if err != nil || len(v.Requests) != 2 {
			t.Fatalf("the good records were not stored: %v, %d requests", err, len(v.Requests))
		}
	})
}

func TestRetention(t *testing.T) {
	t.Parallel()
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testRetention(t, d)
		})
	}
}

func testRetention(t *testing.T, driver string) {
	now := base
	o := freshOptions(t, driver)
	o.Now = func() time.Time { return now }
	s := openTestWith(t, o)
	s.chunk = 50
	var recs []record.Record
	// s_old: 120 requests (more than two purge chunks), all 8 days old.
	for i := range 120 {
		recs = append(recs, req("s_old", "2026-11-22", time.Duration(i)*time.Millisecond, func(r *record.Request) {
			r.Flows = []string{"auth"}
		}))
	}
	write(t, s, recs...)
	now = base.Add(8 * 24 * time.Hour)
	write(t, s, req("s_new", "2026-11-29", 7*24*time.Hour+time.Hour, func(r *record.Request) { r.Flows = []string{"auth"} }))
	n, err := s.Purge(context.Background())
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	if n != 1 {
		t.Errorf("purge deleted %d parts; want 1", n)
	}
	if driver == DriverPostgres {
		// The old day's partition is dropped whole; the next day's ends after the cutoff,
		// and today's and tomorrow's stay.
		var days []string
		rows, err := s.rdb.Query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var d string
			rows.Scan(&d)
			days = append(days, d)
		}
		rows.Close()
		d := base.UnixMilli() / dayMS
		want := []string{partitionName(d + 1), partitionName(d + 7), partitionName(d + 8)}
		if diff := cmp.Diff(want, days); diff != "" {
			t.Errorf("partitions after purge differ (-want +got):\n%s", diff)
		}
	}
	p, err := s.List(context.Background(), ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"s_new/2026-11-29"}, sessionIDs(p)); diff != "" {
		t.Errorf("parts after purge differ (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		q    string
		want int
	}{
		{"SELECT count(*) FROM requests", 1},
		{"SELECT count(*) FROM part_values WHERE kind = " + strconv.Itoa(kindFlow), 1},
		{"SELECT count(*) FROM part_values WHERE part_id NOT IN (SELECT id FROM parts)", 0},
	} {
		var c int
		if err := s.rdb.QueryRow(tc.q).Scan(&c); err != nil {
			t.Fatal(err)
		}
		if c != tc.want {
			t.Errorf("%s = %d after purge; want %d", tc.q, c, tc.want)
		}
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := range 2 {
		s, err := Open(Options{Dir: dir, NoRetentionJob: true})
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		var v int
		if err := s.rdb.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != SchemaVersion {
			t.Errorf("open %d: schema version %d; want %d", i+1, v, SchemaVersion)
		}
		write(t, s, req("s_a", "2026-11-22", time.Duration(i)*time.Second))
		s.Close(context.Background())
	}
	s, err := Open(Options{Dir: dir, NoRetentionJob: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Part(context.Background(), "s_a", "2026-11-22", PartQuery{})
	if err != nil || len(v.Requests) != 2 {
		t.Errorf("after reopening: %v, %d requests; want both writes kept", err, len(v.Requests))
	}
	s.Close(context.Background())

	db, err := sql.Open("sqlite", dsn(dir+"/"+FileName, ckWriterFrames))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(Options{Dir: dir, NoRetentionJob: true}); err == nil {
		t.Errorf("a database from a newer schema opened; want an error that says so")
	}
}

// TestMigrateContentKeys brings a version 3 database, which holds a request stored twice (a
// retried batch), to the current version: every row gets its record's content key but the
// second copy, which stays (its part counts it), and the record written again is not stored a
// third time.
func TestMigrateContentKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", dsn(dir+"/"+FileName, ckWriterFrames))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	for v, m := range migrations[:3] {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m(ctx, tx); err != nil {
			t.Fatalf("migration %d: %v", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	r1, r2 := req("s_m", "2026-11-22", 0), req("s_m", "2026-11-22", time.Second)
	j1, _ := sinks.AppendRecord(nil, r1)
	j2, _ := sinks.AppendRecord(nil, r2)
	t1, t2 := ms(r1.Time), ms(r2.Time)
	for _, q := range []string{
		"PRAGMA user_version = 3",
		fmt.Sprintf(`INSERT INTO parts (id, session, part, first_seen, last_seen, rows, rows_last) VALUES (1, 's_m', '2026-11-22', %d, %d, 3, %d)`, t1, t2, t2),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, row := range []struct {
		t int64
		j []byte
	}{{t1, j1}, {t2, j2}, {t2, j2}} {
		if _, err := db.Exec(`INSERT INTO requests (part_id, time, request_id, method, host, path, route, status, client_ip,
			user, role, malicious, flows, attack_types, record) VALUES (1, ?, '', 'GET', '', '', '', 200, '', '', '', 0, '', '', ?)`,
			row.t, row.j); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := openTestWith(t, Options{Dir: dir})
	var keyed, unkeyed int
	if err := s.rdb.QueryRow(`SELECT count(rkey), count(*) - count(rkey) FROM requests`).Scan(&keyed, &unkeyed); err != nil {
		t.Fatal(err)
	}
	if keyed != 2 || unkeyed != 1 {
		t.Errorf("after migrating: %d rows with a content key, %d without; want 2 and the second copy", keyed, unkeyed)
	}
	var k []byte
	if err := s.rdb.QueryRow(`SELECT rkey FROM requests WHERE time = ? AND rkey IS NOT NULL`, t1).Scan(&k); err != nil {
		t.Fatal(err)
	}
	if want := requestKey(j1); !bytes.Equal(k, want[:]) {
		t.Errorf("migrated content key %x; want %x, the key ingest computes", k, want)
	}
	write(t, s, r1, r2)
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM requests`).Scan(&n); err != nil || n != 3 {
		t.Errorf("after writing the stored records again: %d rows (%v); want the 3 already there", n, err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		if err := s.Close(context.Background()); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("second close: %v; want nil (idempotent)", err)
		}
		if err := s.Write(context.Background(), []record.Record{req("s", "p", 0)}); !errors.Is(err, sinks.ErrClosed) {
			t.Errorf("write after close: %v; want sinks.ErrClosed", err)
		}
		if _, err := s.List(context.Background(), ListQuery{}); !errors.Is(err, ErrClosed) {
			t.Errorf("list after close: %v; want ErrClosed", err)
		}
	})
}

func TestPrefixEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "/api", "/apj", true},
		{"trailing 0xff", "/a\xff", "/b", true},
		{"all 0xff", "\xff\xff", "", false},
	} {
		got, ok := prefixEnd(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: prefixEnd(%q) = %q, %v; want %q, %v", tc.name, tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFactory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sk, err := Factory.Create(config.Sink{Type: Type}, sinks.Settings{DataDir: dir, Retention: time.Hour})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	defer sk.Close(context.Background())
	if s, ok := sk.(*Store); !ok || s.Path() != filepath.Join(dir, FileName) || s.retention != time.Hour {
		t.Errorf("a store sink without a path opened %v; want the data directory's %s, kept for an hour", sk, FileName)
	}
	other := filepath.Join(t.TempDir(), "db")
	sk, err = Factory.Create(config.Sink{Type: Type, Options: &Config{Path: other}}, sinks.Settings{DataDir: dir})
	if err != nil {
		t.Fatalf("create with a path: %v", err)
	}
	defer sk.Close(context.Background())
	if s := sk.(*Store); s.Path() != filepath.Join(other, FileName) {
		t.Errorf("a store sink with path %s opened %s", other, s.Path())
	}
	if _, err := Factory.Create(config.Sink{Type: Type}, sinks.Settings{}); err == nil {
		t.Errorf("no path and no data directory: no error")
	}
}

// TestWriteManyPartsInOneBatch writes a batch of 300 parts, more than one multi-row statement
// holds, mixing parts that bring requests, a session record, or both: each request must land in
// its own part, and each record (with its user, which wins over the requests') on its own part.
func TestWriteManyPartsInOneBatch(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		const parts = 300
		id := func(i int) string { return fmt.Sprintf("s_many%03d", i) }
		var batch []record.Record
		for i := range parts {
			if i%3 != 2 { // parts 0, 1, 3, 4, ... bring requests
				batch = append(batch, req(id(i), "2026-11-22", time.Duration(i)*time.Second, func(r *record.Request) {
					r.User = "req-" + id(i)
				}))
			}
			if i%3 != 0 { // parts 1, 2, 4, 5, ... bring a final record, which the store leaves out
				batch = append(batch, &record.Session{
					Kind: record.KindSession, Session: id(i), Part: "2026-11-22",
					FirstSeen: record.At(base.Add(time.Duration(i) * time.Second)), LastSeen: record.At(base.Add(time.Duration(i+1) * time.Second)),
					Requests: 1, User: "rec-" + id(i), Final: true, EndReason: record.EndEvicted,
				})
			}
		}
		write(t, s, batch...)
		ctx := context.Background()
		for i := range parts {
			v, err := s.Part(ctx, id(i), "2026-11-22", PartQuery{})
			if i%3 == 2 {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("part %s has only a session record: %v; want ErrNotFound", id(i), err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("part %s: %v", id(i), err)
			}
			if len(v.Requests) != 1 || v.Session.Requests != 1 {
				t.Errorf("part %s has %d requests (record: %d), want 1", id(i), len(v.Requests), v.Session.Requests)
			}
			for _, r := range decodeReqs(t, v.Requests) {
				if r.Session != id(i) {
					t.Errorf("part %s holds a request of %s", id(i), r.Session)
				}
			}
			if v.Session.User != "req-"+id(i) {
				t.Errorf("part %s: user %q, want the request's", id(i), v.Session.User)
			}
		}
	})
}

// A part sums the values its requests' responses linked, whichever batches bring them, and a
// request keeps the session it continued from.
func TestLinkedAndContinuedFrom(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, s *Store) {
		login := req("s_link", "2026-11-22", 0, func(r *record.Request) { r.Linked = 2 })
		later := req("s_link", "2026-11-22", time.Minute, func(r *record.Request) {
			r.ContinuedFrom = &record.Continued{Session: "s_own", Kind: "login"}
		})
		again := req("s_link", "2026-11-22", 2*time.Minute, func(r *record.Request) { r.Linked = 1 })
		write(t, s, login)
		write(t, s, again, later)
		v, err := s.Part(context.Background(), "s_link", "2026-11-22", PartQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if v.Session.Linked != 3 {
			t.Errorf("part linked %d; want 3 (2 + 1)", v.Session.Linked)
		}
		var found bool
		for _, r := range decodeReqs(t, v.Requests) {
			if r.RequestID == later.RequestID {
				found = r.ContinuedFrom != nil && *r.ContinuedFrom == *later.ContinuedFrom
			}
		}
		if !found {
			t.Error("the request that continued from s_own lost continued_from")
		}
	})
}

// TestMigrateFingerprints brings a database whose parts do not list their TLS fingerprints
// (the schema before the ja3 and ja4 filters) to the current version, on both drivers: the
// step lists them from the stored records, as ingest cuts them, so the filters find parts
// written before.
func TestMigrateFingerprints(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("j", maxValueLen+10)
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			o := freshOptions(t, d)
			s := openTestWith(t, o)
			write(t, s,
				req("s_f", "2026-11-22", 0, func(r *record.Request) { r.JA3, r.JA4 = fixtureJA3, fixtureJA4 }),
				req("s_g", "2026-11-22", time.Second, func(r *record.Request) { r.JA3, r.UserAgent = long, "a\x00b" }),
				req("s_h", "2026-11-22", 2*time.Second))
			undoMixed(t, s)
			// The fingerprints step is SQLite's version 7 and PostgreSQL's 5.
			undo := []string{`DELETE FROM part_values WHERE kind IN (14, 15)`, `PRAGMA user_version = 6`}
			if d == DriverPostgres {
				undo[1] = `DELETE FROM schema_version WHERE version >= 5`
			}
			for _, q := range undo {
				if _, err := s.wdb.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			s.Close(context.Background())

			s = openTestWith(t, o)
			for _, tc := range []struct {
				f    Filter
				want []string
			}{
				{Filter{JA3: fixtureJA3}, []string{"s_f/2026-11-22"}},
				{Filter{JA4: fixtureJA4}, []string{"s_f/2026-11-22"}},
				{Filter{JA3: long}, []string{"s_g/2026-11-22"}},
			} {
				p, err := s.List(context.Background(), ListQuery{Filter: tc.f})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, sessionIDs(p)); diff != "" {
					t.Errorf("after migrating, %+v lists (-want +got):\n%s", tc.f, diff)
				}
			}
		})
	}
}

// undoMixed takes the store's schema back to the version before parts.mixed and the indexes of
// parts by user and role (SQLite's version 7, PostgreSQL's 5).
func undoMixed(t *testing.T, s *Store) {
	t.Helper()
	undo := []string{`DROP INDEX parts_user`, `DROP INDEX parts_role`, `DROP INDEX parts_mixed`,
		`ALTER TABLE parts DROP COLUMN mixed`, `PRAGMA user_version = 7`}
	if s.d.postgres {
		undo[4] = `DELETE FROM schema_version WHERE version >= 6`
	}
	for _, q := range undo {
		if _, err := s.wdb.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestListPinnedUserRole lists parts by user and by role when the value is too common to
// probe (probe limit 0), so that the list walks the parts whose latest value it is and the
// parts with several: parts whose requests change role or user, in one batch or across
// batches in either order, must be listed by every value they have, page by page, on both
// drivers, in the same order as the probes list them; and again after the migration that
// brings the columns to a database written before.
func TestListPinnedUserRole(t *testing.T) {
	t.Parallel()
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			o := freshOptions(t, d)
			s := openTestWith(t, o)
			role := func(v string) func(*record.Request) { return func(r *record.Request) { r.Role = v } }
			user := func(v string) func(*record.Request) { return func(r *record.Request) { r.User = v } }
			var recs []record.Record
			// Plain parts: one role, one user each; the latest parts last.
			for i := range 30 {
				name := fmt.Sprintf("s_%02d", i)
				r := "customer"
				if i%3 == 0 {
					r = "admin"
				}
				recs = append(recs, req(name, "2026-11-22", time.Duration(i)*time.Second, role(r), user(fmt.Sprintf("u%d", i%2))))
			}
			write(t, s, recs...)
			// Parts whose requests have several values: in one batch, and across two batches,
			// the earlier request written last.
			write(t, s,
				req("s_mix1", "2026-11-22", 100*time.Second, role("admin"), user("u0")),
				req("s_mix1", "2026-11-22", 101*time.Second, role("customer"), user("u1")))
			write(t, s, req("s_mix2", "2026-11-22", 111*time.Second, role("customer"), user("u0")))
			write(t, s, req("s_mix2", "2026-11-22", 110*time.Second, role("admin"), user("u1")))
			write(t, s, req("s_mix3", "2026-11-22", 120*time.Second, role("admin")))
			write(t, s, req("s_mix3", "2026-11-22", 121*time.Second, role("support"), user("u1")))
			// A part without a role, and one whose role came only once.
			write(t, s, req("s_none", "2026-11-22", 130*time.Second))
			write(t, s, req("s_once", "2026-11-22", 140*time.Second), req("s_once", "2026-11-22", 141*time.Second, role("admin")))

			filters := []Filter{
				{Role: "admin"}, {Role: "customer"}, {Role: "support"}, {Role: "nobody"},
				{User: "u0"}, {User: "u1"}, {Role: "admin", User: "u1"},
				{Role: "admin", Method: "GET"}, {Role: "admin", Status: Status{Code: 500, Set: true}},
				{Role: "admin", From: base.Add(50 * time.Second)},
			}
			check := func(t *testing.T, s *Store) {
				for _, f := range filters {
					var pages [2][]string
					for i, probe := range []int{1000, 0} {
						s.probe = probe
						cursor := ""
						for {
							p, err := s.PlanList(context.Background(), ListQuery{Filter: f, Limit: 4, Cursor: cursor})
							if err != nil {
								t.Fatal(err)
							}
							if probe == 0 && !p.empty && p.pin == nil {
								t.Fatalf("%+v with probe limit 0: not pinned", f)
							}
							page, err := p.Run(context.Background())
							if err != nil {
								t.Fatal(err)
							}
							pages[i] = append(pages[i], sessionIDs(page)...)
							if cursor = page.Next; cursor == "" {
								break
							}
						}
					}
					if diff := cmp.Diff(pages[0], pages[1]); diff != "" {
						t.Errorf("%+v: the pinned walk differs from the probes (-probes +pinned):\n%s", f, diff)
					}
				}
				// What the probes answer, written out for the role admin.
				s.probe = 1000
				p, err := s.List(context.Background(), ListQuery{Filter: Filter{Role: "admin"}, Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				want := []string{"s_once", "s_mix3", "s_mix2", "s_mix1", "s_27", "s_24", "s_21", "s_18", "s_15", "s_12", "s_09", "s_06", "s_03", "s_00"}
				for i := range want {
					want[i] += "/2026-11-22"
				}
				if diff := cmp.Diff(want, sessionIDs(p)); diff != "" {
					t.Errorf("role admin (-want +got):\n%s", diff)
				}
			}
			check(t, s)
			var mixed []string
			rows, err := s.wdb.Query(`SELECT session, mixed FROM parts WHERE mixed <> 0 ORDER BY session`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var name string
				var m int
				if err := rows.Scan(&name, &m); err != nil {
					t.Fatal(err)
				}
				mixed = append(mixed, fmt.Sprintf("%s:%d", name, m))
			}
			rows.Close()
			if diff := cmp.Diff([]string{"s_mix1:3", "s_mix2:3", "s_mix3:2"}, mixed); diff != "" {
				t.Errorf("parts.mixed (-want +got):\n%s", diff)
			}

			undoMixed(t, s)
			s.Close(context.Background())
			s = openTestWith(t, o)
			check(t, s)
		})
	}
}
