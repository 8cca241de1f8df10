package explore

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// exportedHAR is the part of a HAR 1.2 log the export test reads.
type exportedHAR struct {
	Log struct {
		Version string `json:"version"`
		Creator struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"creator"`
		Pages   []any `json:"pages"`
		Entries []struct {
			StartedDateTime string  `json:"startedDateTime"`
			Time            float64 `json:"time"`
			Request         struct {
				Method      string              `json:"method"`
				URL         string              `json:"url"`
				HTTPVersion *string             `json:"httpVersion"`
				Headers     []map[string]string `json:"headers"`
				QueryString []any               `json:"queryString"`
				Cookies     []any               `json:"cookies"`
				HeadersSize int                 `json:"headersSize"`
				BodySize    int64               `json:"bodySize"`
				PostData    *struct {
					MimeType string `json:"mimeType"`
					Text     string `json:"text"`
				} `json:"postData"`
			} `json:"request"`
			Response struct {
				Status     int    `json:"status"`
				StatusText string `json:"statusText"`
				Headers    []any  `json:"headers"`
				Content    *struct {
					Size     int64   `json:"size"`
					MimeType *string `json:"mimeType"`
				} `json:"content"`
				RedirectURL *string `json:"redirectURL"`
			} `json:"response"`
			Cache     map[string]any     `json:"cache"`
			Timings   map[string]float64 `json:"timings"`
			Session   string             `json:"_session"`
			Part      string             `json:"_part"`
			RequestID string             `json:"_requestId"`
			Route     string             `json:"_route"`
			Key       string             `json:"_key"`
			ClientIP  string             `json:"_clientIP"`
			User      string             `json:"_user"`
			Flows     []string           `json:"_flows"`
			Params    map[string]string  `json:"_params"`
			Malicious bool               `json:"_malicious"`
			Attack    *struct {
				Types []string `json:"types"`
			} `json:"_attack"`
		} `json:"entries"`
	} `json:"log"`
}

func TestHARExport(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		h := New(Options{Store: testStore(t, driver), Version: "v9.9.9"})

		a := get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22/session.har", "")
		if a.status != 200 {
			t.Fatalf("har: %d %s", a.status, a.body)
		}
		if cd := a.header.Get("Content-Disposition"); cd != `attachment; filename="s_aaaa_2026-11-22.har"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		var got exportedHAR
		if err := json.Unmarshal([]byte(a.body), &got); err != nil {
			t.Fatalf("har does not parse: %v\n%s", err, a.body)
		}
		l := got.Log
		if l.Version != "1.2" || l.Creator.Name != "apisessions" || l.Creator.Version != "v9.9.9" || l.Pages == nil || len(l.Entries) != 2 {
			t.Fatalf("log = %+v; want HAR 1.2 by apisessions v9.9.9 with 2 entries", l)
		}
		for i, e := range l.Entries {
			// The fields HAR 1.2 requires are present, whatever the store kept.
			if e.Request.HTTPVersion == nil || e.Request.QueryString == nil || e.Request.Cookies == nil || e.Request.HeadersSize != -1 ||
				e.Response.Headers == nil || e.Response.Content == nil || e.Response.Content.MimeType == nil ||
				e.Response.RedirectURL == nil || e.Cache == nil || e.Timings == nil {
				t.Errorf("entry %d lacks a required field: %+v", i, e)
			}
			if e.Session != "s_aaaa" || e.Part != "2026-11-22" || e.User != "alice" || e.ClientIP != "203.0.113.7" {
				t.Errorf("entry %d custom fields = %+v", i, e)
			}
		}
		first, second := l.Entries[0], l.Entries[1]
		if first.StartedDateTime != "2026-11-22T10:00:00.000Z" || first.Request.Method != "GET" ||
			first.Request.URL != "https://shop.example.com/api/items" || first.Response.Status != 200 || first.Response.StatusText != "OK" ||
			first.RequestID != "r1" || first.Route != "/api/items" || first.Key != "builtin:cookie:sid" || first.Malicious {
			t.Errorf("first entry = %+v", first)
		}
		if len(first.Request.Headers) != 1 || first.Request.Headers[0]["name"] != "user-agent" || first.Request.Headers[0]["value"] != "Mozilla/5.0" {
			t.Errorf("first entry's headers = %v; want the user agent alone", first.Request.Headers)
		}
		// The malicious request keeps its content, hashed values hashed, and its verdict.
		if !second.Malicious || second.Attack == nil || second.Attack.Types[0] != "sqli" || second.Response.Status != 403 ||
			second.Params["q"] != "' OR 1=1--" || len(second.Flows) != 1 || second.Flows[0] != "auth" {
			t.Errorf("second entry = %+v", second)
		}
		if pd := second.Request.PostData; pd == nil || pd.Text != `{"q":"' OR 1=1--"}` || pd.MimeType != "application/json" {
			t.Errorf("second entry's postData = %+v", pd)
		}
		if !strings.Contains(a.body, `{"name":"cookie","value":"sid=hmac:00112233445566778899aabbccddeeff"}`) {
			t.Errorf("the kept cookie header is missing or not hashed:\n%s", a.body)
		}

		a = get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22/session.har?method=DELETE", "")
		if err := json.Unmarshal([]byte(a.body), &got); a.status != 200 || err != nil || len(got.Log.Entries) != 0 || got.Log.Creator.Name != "apisessions" {
			t.Errorf("har with nothing matching: %d %v %q; want a log without entries", a.status, err, a.body)
		}
		a = get(t, h, "/api/v1/sessions/s_zzzz/2026-11-22/session.har", "")
		if a.status != 404 || !strings.Contains(errorOf(t, a), "no session part") {
			t.Errorf("unknown part: %d %s", a.status, a.body)
		}
		a = get(t, h, "/api/v1/sessions/s_aaaa/2026-11-22/session.har?status=abc", "")
		if a.status != 400 {
			t.Errorf("bad filter: %d %s; want 400", a.status, a.body)
		}
		tok := New(Options{Store: testStore(t, driver), Token: "tok"})
		if a := get(t, tok, "/api/v1/sessions/s_aaaa/2026-11-22/session.har", ""); a.status != 401 {
			t.Errorf("without the token: %d; want 401", a.status)
		}
		if a := get(t, tok, "/api/v1/sessions/s_aaaa/2026-11-22/session.har", "tok"); a.status != 200 {
			t.Errorf("with the token: %d; want 200", a.status)
		}
	})
}

// BenchmarkPartExport measures the two exports of one part of 5000 requests on SQLite, side by
// side: bytes per second of the answer, and allocations per export.
func BenchmarkPartExport(b *testing.B) {
	s, err := store.Open(store.Options{Dir: b.TempDir(), NoRetentionJob: true, Readers: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	var recs []record.Record
	for i := range 5000 {
		recs = append(recs, &record.Request{Kind: "request", Session: "s_bench", Part: "2026-11-22", RequestID: "r" + strconv.Itoa(i),
			Time: record.At(base.Add(time.Duration(i) * time.Second)), Method: "POST", Host: "shop.example.com",
			Path: "/api/items/" + strconv.Itoa(i), Route: "/api/items/{id}", Status: 200, DurationMS: 3.2, RequestBytes: 120, ResponseBytes: 900,
			ClientIP: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", User: "alice", Flows: []string{"billing"},
			Params: map[string]string{"token": "hmac:00112233445566778899aabbccddeeff", "item": strconv.Itoa(i)},
			Key:    record.Key{Source: "param", Name: "token"}})
	}
	if err := s.Write(context.Background(), recs); err != nil {
		b.Fatal(err)
	}
	h := New(Options{Store: s})
	for _, name := range []string{"requests.csv", "session.har"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/sessions/s_bench/2026-11-22/"+name, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", name, w.Code)
				}
				b.SetBytes(int64(w.Body.Len()))
			}
		})
	}
}
