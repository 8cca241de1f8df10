package explore

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

var base = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// drivers are the store engines the API tests run on.
var drivers = []string{store.DriverSQLite, store.DriverPostgres}

// forEachDriver runs body as a parallel subtest per store driver.
func forEachDriver(t *testing.T, body func(t *testing.T, driver string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			body(t, d)
		})
	}
}

func testStore(t *testing.T, driver string) *store.Store {
	t.Helper()
	o := store.Options{Driver: driver, NoRetentionJob: true, Readers: 2}
	if driver == store.DriverPostgres {
		o.DSN = testutil.PostgresDB(t)
	} else {
		o.Dir = t.TempDir()
	}
	s, err := store.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	reqs := []record.Record{
		&record.Request{Kind: "request", Session: "s_aaaa", Part: "2026-11-22", RequestID: "r1", Time: record.At(base),
			Method: "GET", Host: "shop.example.com", Path: "/api/items", Route: "/api/items", Status: 200,
			ClientIP: "203.0.113.7", UserAgent: "Mozilla/5.0", User: "alice", Key: record.Key{Source: "builtin", Name: "cookie:sid"}},
		&record.Request{Kind: "request", Session: "s_aaaa", Part: "2026-11-22", RequestID: "r2", Time: record.At(base.Add(time.Second)),
			Method: "POST", Host: "shop.example.com", Path: "/api/search", Route: "/api/search", Status: 403,
			ClientIP: "203.0.113.7", UserAgent: "=HYPERLINK(\"http://evil\")", User: "alice", Malicious: true,
			Flows:  []string{"auth"},
			Params: map[string]string{"q": "' OR 1=1--", "note": "line1\nline2, \"quoted\" ünïcødé"},
			Attack: &record.Attack{Source: "header", Types: []string{"sqli"},
				Headers: map[string]string{"content-type": "application/json", "cookie": "sid=hmac:00112233445566778899aabbccddeeff"},
				Body:    `{"q":"' OR 1=1--"}`}},
		&record.Request{Kind: "request", Session: "s_bbbb", Part: "2026-11-22", RequestID: "r3", Time: record.At(base.Add(time.Minute)),
			Method: "GET", Host: "shop.example.com", Path: "/", Route: "/", Status: 200, ClientIP: "198.51.100.2",
			UserAgent: "Mozilla/5.0", JA3: "e7d705a3286e19ea42f587b344ee6865", JA4: "t13d1516h2_8daaf6152771_b186095e22b6"},
	}
	if err := s.Write(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	return s
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, h http.Handler, path, token string) answer {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return answer{status: w.Code, header: w.Header(), body: w.Body.String()}
}

func errorOf(t *testing.T, a answer) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(a.body), &e); err != nil {
		t.Fatalf("error answer is not JSON: %q", a.body)
	}
	return e.Error
}

func TestErrors(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver)})
		tests := []struct {
			name   string
			path   string
			status int
			msg    string
		}{
			{"status out of range", "/api/v1/sessions?status=6xx", 400, `status "6xx" is not a status code or class; use e.g. 404 or 4xx (0 = no response)`},
			{"status not a number", "/api/v1/sessions?status=ok", 400, `status "ok" is not a status code or class; use e.g. 404 or 4xx (0 = no response)`},
			{"ip", "/api/v1/sessions?ip=localhost", 400, `ip "localhost" is not an IP address; use e.g. 203.0.113.7 or 2001:db8::1`},
			{"unknown filter", "/api/v1/sessions?usr=alice", 400, `unknown filter "usr"; the filters here are from, to, user, role, flow, ip, request_id, method, status, host, path, route, malicious, ua, ja3, ja4, min_risk, limit, cursor`},
			{"user inside a part", "/api/v1/sessions/s_aaaa/2026-11-22?user=alice", 400, `unknown filter "user"; the filters here are from, to, method, status, ip, path, route, flow, malicious, request_id, limit, cursor`},
			{"limit zero", "/api/v1/sessions?limit=0", 400, `limit "0" is not a number from 1 to 1000; use e.g. limit=50`},
			{"limit too big", "/api/v1/sessions?limit=1001", 400, `limit "1001" is not a number from 1 to 1000; use e.g. limit=50`},
			{"time", "/api/v1/sessions?from=yesterday", 400, `from "yesterday" is not an RFC 3339 time; use e.g. 2026-11-22T10:00:00Z`},
			{"interval reversed", "/api/v1/sessions?from=2026-11-22T11:00:00Z&to=2026-11-22T10:00:00Z", 400, `to (2026-11-22T10:00:00Z) is before from (2026-11-22T11:00:00Z); swap them`},
			{"path and route", "/api/v1/sessions?path=/api&route=/api/items", 400, `path and route are both given; use one of them`},
			{"path without slash", "/api/v1/sessions?path=api", 400, `path "api" does not begin with /; give the beginning of a path, e.g. /api/`},
			{"flow", "/api/v1/sessions?flow=payments", 400, `flow "payments" is not a business flow; use one of ai_llm, account_creation, account_management, admin, auth, billing, sms_gateway`},
			{"malicious", "/api/v1/sessions?malicious=yes", 400, `malicious "yes" is not true or false; use malicious=true or leave it out`},
			{"min_risk", "/api/v1/sessions?min_risk=101", 400, `min_risk "101" is not a risk score from 0 to 100; use e.g. min_risk=60`},
			{"method", "/api/v1/sessions?method=GE%20T", 400, `method "GE T" is not an HTTP method; use e.g. GET or POST`},
			{"repeated", "/api/v1/sessions?user=a&user=b", 400, `filter user is given 2 times; give it once`},
			{"cursor", "/api/v1/sessions?cursor=xyz", 400, store.ErrBadCursor.Error()},
			{"hostile value is escaped", "/api/v1/sessions?ip=%1b%5b31m%00", 400, `ip "\x1b[31m\x00" is not an IP address; use e.g. 203.0.113.7 or 2001:db8::1`},
			{"unknown part", "/api/v1/sessions/s_zzzz/2026-11-22", 404, `no session part "s_zzzz"/"2026-11-22"; it may have passed the retention`},
			{"unknown part csv", "/api/v1/sessions/s_zzzz/2026-11-22/requests.csv", 404, `no session part "s_zzzz"/"2026-11-22"; it may have passed the retention`},
			{"unknown request", "/api/v1/requests/nope", 404, `no request with id "nope"; it may have passed the retention`},
			{"unknown path", "/api/v2/sessions", 404, `no such API path; see /api/v1/sessions`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				a := get(t, h, tc.path, "")
				if a.status != tc.status {
					t.Errorf("%s: status %d; want %d (%s)", tc.name, a.status, tc.status, a.body)
				}
				if got := errorOf(t, a); got != tc.msg {
					t.Errorf("%s: error\n got %q\nwant %q", tc.name, got, tc.msg)
				}
				if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Errorf("%s: Content-Type %q; want JSON", tc.name, ct)
				}
				if a.header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("%s: no X-Content-Type-Options: nosniff", tc.name)
				}
			})
		}
	})
}

func TestToken(t *testing.T) {
	t.Parallel()
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "the page") })
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver), Token: "s3cret-token", UI: ui})
		tests := []struct {
			name, path, token string
			status            int
		}{
			{"no token", "/api/v1/sessions", "", 401},
			{"wrong token", "/api/v1/sessions", "s3cret-tokeN", 401},
			{"prefix of the token", "/api/v1/sessions", "s3cret", 401},
			{"right token", "/api/v1/sessions", "s3cret-token", 200},
			{"csv wants it too", "/api/v1/sessions/s_aaaa/2026-11-22/requests.csv", "", 401},
			{"request lookup wants it too", "/api/v1/requests/r1", "", 401},
			{"the page loads without it", "/", "", 200},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				a := get(t, h, tc.path, tc.token)
				if a.status != tc.status {
					t.Errorf("%s: status %d; want %d", tc.name, a.status, tc.status)
				}
				if tc.status == 401 && !strings.Contains(errorOf(t, a), "Authorization: Bearer") {
					t.Errorf("%s: 401 message %q does not say how to authenticate", tc.name, a.body)
				}
			})
		}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/sessions", nil)
		r.Header.Set("Authorization", "Basic czNjcmV0LXRva2Vu")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 401 {
			t.Errorf("Basic scheme: status %d; want 401", w.Code)
		}
	})
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver)})

		t.Run("list with cursor", func(t *testing.T) {
			a := get(t, h, "/api/v1/sessions?limit=1", "")
			var got struct {
				Sessions []record.Session `json:"sessions"`
				Next     string           `json:"next"`
			}
			if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
				t.Fatalf("list: %d %v %s", a.status, err, a.body)
			}
			if len(got.Sessions) != 1 || got.Sessions[0].Session != "s_bbbb" || got.Next == "" {
				t.Fatalf("first page = %+v; want s_bbbb and a next cursor", got)
			}
			a = get(t, h, "/api/v1/sessions?limit=1&cursor="+got.Next, "")
			got.Next = ""
			if err := json.Unmarshal([]byte(a.body), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Sessions) != 1 || got.Sessions[0].Session != "s_aaaa" || got.Sessions[0].Requests != 2 || got.Next != "" {
				t.Errorf("second page = %+v; want s_aaaa with 2 requests and no cursor", got)
			}
		})

		t.Run("filters combine", func(t *testing.T) {
			a := get(t, h, "/api/v1/sessions?user=alice&status=4xx&malicious=true&flow=auth&method=post&ip=203.0.113.7&from=2026-11-22T10:00:00Z&to=2026-11-22T10:00:01Z&host=SHOP.example.com&path=/api/", "")
			if a.status != 200 || !strings.Contains(a.body, `"s_aaaa"`) || strings.Contains(a.body, "s_bbbb") {
				t.Errorf("combined filters: %d %s; want s_aaaa only", a.status, a.body)
			}
		})

		t.Run("pivots", func(t *testing.T) {
			for _, tc := range []struct {
				query string
				want  []string
			}{
				{"ua=Mozilla%2F5.0", []string{"s_bbbb", "s_aaaa"}},
				{"ua=%3DHYPERLINK(%22http%3A%2F%2Fevil%22)", []string{"s_aaaa"}},
				{"ua=Mozilla", nil},
				{"ja3=e7d705a3286e19ea42f587b344ee6865", []string{"s_bbbb"}},
				{"ja4=t13d1516h2_8daaf6152771_b186095e22b6&ip=198.51.100.2", []string{"s_bbbb"}},
				{"ja4=t13d1516h2_8daaf6152771_b186095e22b6&user=alice", nil},
			} {
				a := get(t, h, "/api/v1/sessions?"+tc.query, "")
				var got struct {
					Sessions []record.Session `json:"sessions"`
				}
				if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
					t.Fatalf("%s: %d %v %s", tc.query, a.status, err, a.body)
				}
				var ids []string
				for _, s := range got.Sessions {
					ids = append(ids, s.Session)
				}
				if diff := cmp.Diff(tc.want, ids); diff != "" {
					t.Errorf("%s: sessions differ (-want +got):\n%s", tc.query, diff)
				}
			}
		})

		t.Run("risk", func(t *testing.T) {
			// s_aaaa: a malicious request (40 points) answered 403 (10).
			a := get(t, h, "/api/v1/sessions?min_risk=50", "")
			var got struct {
				Sessions []record.Session `json:"sessions"`
			}
			if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
				t.Fatalf("list: %d %v %s", a.status, err, a.body)
			}
			want := []record.RiskReason{{Signal: "malicious", Points: 40}, {Signal: "denied", Points: 10}}
			if len(got.Sessions) != 1 || got.Sessions[0].Session != "s_aaaa" || got.Sessions[0].Risk != 50 ||
				!slices.Equal(got.Sessions[0].RiskReasons, want) {
				t.Fatalf("min_risk=50: %s; want s_aaaa alone with risk 50 and its reasons", a.body)
			}
			if a := get(t, h, "/api/v1/sessions?min_risk=51", ""); a.status != 200 || strings.Contains(a.body, "s_aaaa") {
				t.Errorf("min_risk=51: %d %s; want no part", a.status, a.body)
			}
		})

		t.Run("part", func(t *testing.T) {
			a := get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22?malicious=true", "")
			var got struct {
				Session  record.Session   `json:"session"`
				Stats    store.Stats      `json:"stats"`
				Requests []record.Request `json:"requests"`
			}
			if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
				t.Fatalf("part: %d %v %s", a.status, err, a.body)
			}
			if len(got.Requests) != 1 || got.Requests[0].RequestID != "r2" || got.Stats.Requests != 2 || got.Session.Requests != 2 {
				t.Errorf("part = %+v; want r2 alone, stats and record over both requests", got)
			}
		})

		t.Run("request lookup", func(t *testing.T) {
			a := get(t, h, "/api/v1/requests/r2", "")
			var got store.Found
			if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
				t.Fatalf("request: %d %v %s", a.status, err, a.body)
			}
			if got.Session != "s_aaaa" || got.Part != "2026-11-22" || !strings.Contains(string(got.Request), `"request_id":"r2"`) {
				t.Errorf("request lookup = %+v", got)
			}
		})

		t.Run("csv", func(t *testing.T) {
			a := get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22/requests.csv", "")
			if a.status != 200 {
				t.Fatalf("csv: %d %s", a.status, a.body)
			}
			if cd := a.header.Get("Content-Disposition"); cd != `attachment; filename="s_aaaa_2026-11-22.csv"` {
				t.Errorf("Content-Disposition %q", cd)
			}
			rows, err := csv.NewReader(strings.NewReader(a.body)).ReadAll()
			if err != nil {
				t.Fatalf("csv does not parse: %v", err)
			}
			want := [][]string{
				csvHeader,
				{"2026-11-22T10:00:00.000Z", "r1", "GET", "shop.example.com", "/api/items", "/api/items", "200", "0", "0", "0",
					"203.0.113.7", "Mozilla/5.0", "alice", "", "", "false", ""},
				{"2026-11-22T10:00:01.000Z", "r2", "POST", "shop.example.com", "/api/search", "/api/search", "403", "0", "0", "0",
					"203.0.113.7", `'=HYPERLINK("http://evil")`, "alice", "", "auth", "true",
					`{"note":"line1\nline2, \"quoted\" ünïcødé","q":"' OR 1=1--"}`},
			}
			if diff := cmp.Diff(want, rows); diff != "" {
				t.Errorf("csv differs (-want +got):\n%s", diff)
			}
			a = get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22/requests.csv?method=DELETE", "")
			if a.status != 200 || strings.Count(a.body, "\n") != 1 {
				t.Errorf("csv with nothing matching: %d %q; want the header row alone", a.status, a.body)
			}
		})
	})
}

func TestReadTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
		wantErr       string
	}{
		{"trailing newline removed", "tok-123\n", 0o600, "tok-123", ""},
		{"crlf removed", "tok-123\r\n", 0o400, "tok-123", ""},
		{"readable by others", "SECRETVALUE", 0o644, "", "readable by others"},
		{"empty", "\n", 0o600, "", "empty"},
		{"spaces", " SECRETVALUE \n", 0o600, "", "spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			got, err := ReadTokenFile(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s: err = %v; want one mentioning %q", tc.name, err, tc.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "SECRETVALUE") {
					t.Errorf("%s: the error shows the token: %v", tc.name, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
			}
		})
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing file: no error")
	}
}

func TestNoStore(t *testing.T) {
	t.Parallel()
	a := get(t, New(Options{}), "/api/v1/sessions", "")
	if a.status != 503 || !strings.Contains(errorOf(t, a), "type: store") {
		t.Errorf("without a store: %d %s; want 503 saying how to add one", a.status, a.body)
	}
	if a := get(t, New(Options{}), "/", ""); a.status != 404 {
		t.Errorf("without a UI: / answered %d; want 404", a.status)
	}
}

func TestScanTimeout(t *testing.T) {
	t.Parallel()
	// A time interval alone scans; a deadline that has passed when the scan starts stops it.
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver), ScanTimeout: time.Nanosecond})
		a := get(t, h, "/api/v1/sessions?from=2026-11-22T10:00:00Z", "")
		if a.status != http.StatusServiceUnavailable || !strings.Contains(errorOf(t, a), "took longer than 1ns; add a selective filter") {
			t.Errorf("interrupted scan: %d %s; want 503 saying how to narrow the filters", a.status, a.body)
		}
		if ra := a.header.Get("Retry-After"); ra != "" {
			t.Errorf("interrupted scan: Retry-After %q; want none, the same query would scan again", ra)
		}
		if a := get(t, h, "/api/v1/sessions?user=alice", ""); a.status != http.StatusOK {
			t.Errorf("a list the indexes answer: %d %s; want 200 whatever the scan bound", a.status, a.body)
		}
	})
}

// blockingWriter holds the first write of an answer until release is closed.
type blockingWriter struct {
	*httptest.ResponseRecorder
	writing, release chan struct{}
	once             sync.Once
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return w.ResponseRecorder.Write(b)
}

func TestHeavyQueriesPerClient(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver), HeavyPerClient: 1})
		from := func(remote, path string) answer {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.RemoteAddr = remote
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return answer{status: w.Code, header: w.Header(), body: w.Body.String()}
		}
		// A client reading an export slowly holds its one heavy query.
		bw := &blockingWriter{ResponseRecorder: httptest.NewRecorder(), writing: make(chan struct{}), release: make(chan struct{})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			r := httptest.NewRequest(http.MethodGet, "/api/v1/sessions/s_aaaa/2026-11-22/requests.csv", nil)
			r.RemoteAddr = "192.0.2.1:4000"
			h.ServeHTTP(bw, r)
		}()
		<-bw.writing

		a := from("192.0.2.1:4001", "/api/v1/sessions?from=2026-11-22T10:00:00Z")
		if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" || !strings.Contains(errorOf(t, a), "heavy queries") {
			t.Errorf("scan beside the client's export: %d, Retry-After %q, %s; want 429, 1", a.status, a.header.Get("Retry-After"), a.body)
		}
		if a := from("192.0.2.1:4002", "/api/v1/sessions/s_aaaa/2026-11-22/requests.csv"); a.status != http.StatusTooManyRequests {
			t.Errorf("second export of the client: %d; want 429", a.status)
		}
		if a := from("192.0.2.1:4003", "/api/v1/sessions"); a.status != http.StatusOK {
			t.Errorf("plain list of the same client: %d %s; want 200", a.status, a.body)
		}
		if a := from("192.0.2.2:4000", "/api/v1/sessions?from=2026-11-22T10:00:00Z"); a.status != http.StatusOK {
			t.Errorf("scan of another client: %d %s; want 200", a.status, a.body)
		}
		close(bw.release)
		<-done
		if bw.Code != http.StatusOK || !strings.Contains(bw.Body.String(), "r2") {
			t.Errorf("the held export: %d %q; want the whole CSV", bw.Code, bw.Body.String())
		}
		if a := from("192.0.2.1:4004", "/api/v1/sessions?from=2026-11-22T10:00:00Z"); a.status != http.StatusOK {
			t.Errorf("scan after the export ended: %d %s; want 200", a.status, a.body)
		}
	})
}
