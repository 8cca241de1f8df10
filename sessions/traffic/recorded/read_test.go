package recorded

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestReadHAR(t *testing.T) {
	t.Parallel()
	const har = `{"log":{"entries":[
	 {"startedDateTime":"2026-11-22T10:00:00.000+01:00","time":25.5,
	  "request":{"method":"post","url":"https://Shop.example.com:8443/api/login?next=%2Fhome","headers":[
	    {"name":":authority","value":"evil"},{"name":"Host","value":"x"},{"name":"Content-Type","value":"application/x-www-form-urlencoded"}],
	   "cookies":[{"name":"sid","value":"abc"},{"name":"theme","value":"dark"}],
	   "postData":{"mimeType":"application/x-www-form-urlencoded","params":[{"name":"user","value":"zoë"}]}},
	  "response":{"status":200,"headers":[{"name":"X-Request-Id","value":"resp"}],"cookies":[{"name":"sid","value":"new"}],
	   "content":{"text":"eyJvayI6dHJ1ZX0=","encoding":"base64"}},
	  "_clientIP":"2001:db8::7"},
	 {"startedDateTime":"2026-11-22T10:00:01Z","request":{"method":"GET","url":"/relative"},"response":{"status":0}},
	 {"startedDateTime":"2026-11-22T10:00:02Z","request":{"method":"GET","url":"http://a.example/"},"response":{"status":0}}
	]}}`
	xs, err := ReadHAR(strings.NewReader(har), Options{ClientIP: "192.0.2.9", MaxBodyBytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 2 {
		t.Fatalf("read %d exchanges; want 2 (the relative URL is skipped)", len(xs))
	}
	x := xs[0]
	want := traffic.Exchange{
		RequestID: "har-1",
		Start:     time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
		End:       time.Date(2026, 11, 22, 9, 0, 0, 25500000, time.UTC),
		Method:    "POST", Scheme: "https", Host: "Shop.example.com:8443", Path: "/api/login?next=%2Fhome",
		SourceAddress: "[2001:db8::7]:0",
		RequestHeaders: []traffic.Header{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: "Shop.example.com:8443"},
			{Name: ":path", Value: "/api/login?next=%2Fhome"}, {Name: "content-type", Value: "application/x-www-form-urlencoded"},
			{Name: "cookie", Value: "sid=abc; theme=dark"},
		},
		RequestBody: []byte("user"), RequestBodyTruncated: true, RequestBytes: int64(len("user=zo%C3%AB")),
		ResponseSeen: true, Status: 200,
		ResponseHeaders: []traffic.Header{{Name: ":status", Value: "200"}, {Name: "x-request-id", Value: "resp"}, {Name: "set-cookie", Value: "sid=new"}},
		ResponseBody:    []byte(`{"ok"`), ResponseBodyTruncated: true, ResponseBytes: 11,
	}
	want.ResponseBody = want.ResponseBody[:4]
	if diff := cmp.Diff(want, x, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("HAR entry differs (-want +got):\n%s", diff)
	}
	if xs[1].SourceAddress != "192.0.2.9:0" || !xs[1].Partial || xs[1].ResponseSeen {
		t.Errorf("entry without client or response: %+v", xs[1])
	}
	for _, bad := range []string{"", "[]", `{"log":{"entries":[{"request":{"url":"x"}}]}}`} {
		if _, err := ReadHAR(strings.NewReader(bad), Options{}); err == nil {
			t.Errorf("ReadHAR(%q): no error", bad)
		}
	}
}

func TestReadJSONL(t *testing.T) {
	t.Parallel()
	in := `{"kind":"request","session":"s_1","part":"2026-11-22","request_id":"r1","time":"2026-11-22T10:00:00.000Z","method":"GET","host":"a.example","path":"/x","status":403,"duration_ms":5,"client_ip":"203.0.113.7","user_agent":"curl/8","ja3":"j3","malicious":true,"attack":{"source":"header","types":["sqli","xss"]}}

{"kind":"session","session":"s_1","part":"2026-11-22","flows":{"billing":2},"requests":3}
{"kind":"request","time":"2026-11-22T10:00:01.000Z","status":0}
`
	xs, err := ReadJSONL(strings.NewReader(in), Options{JA3Header: "x-ja3", AttackHeader: "x-waf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 2 {
		t.Fatalf("read %d exchanges; want the 2 request records", len(xs))
	}
	x := xs[0]
	if x.SourceAddress != "203.0.113.7:0" || x.Status != 403 || x.RequestID != "r1" || x.End.Sub(x.Start) != 5*time.Millisecond {
		t.Errorf("exchange from record = %+v", x)
	}
	if v, _ := x.RequestHeader("x-ja3"); v != "j3" {
		t.Errorf("ja3 header %q; want j3", v)
	}
	if v, _ := x.ResponseHeader("x-waf"); v != "sqli,xss" {
		t.Errorf("attack header %q; want sqli,xss so the verdict survives", v)
	}
	if xs[1].RequestID != "jsonl-4" || xs[1].ResponseSeen || xs[1].Path != "/" {
		t.Errorf("minimal record = %+v", xs[1])
	}
	if _, err := ReadJSONL(strings.NewReader("{not json\n"), Options{}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: err = %v; want one naming line 1", err)
	}
}

func TestShiftToNowKeepsGaps(t *testing.T) {
	t.Parallel()
	base := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	xs := []traffic.Exchange{
		{Start: base, End: base.Add(time.Second)},
		{Start: base.Add(time.Hour), End: base.Add(time.Hour + 2*time.Second)},
		{}, // no times: left alone
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ShiftToNow(xs, now)
	if !xs[1].Start.Equal(now) {
		t.Errorf("the latest request starts at %v, want now %v", xs[1].Start, now)
	}
	if got := xs[1].Start.Sub(xs[0].Start); got != time.Hour {
		t.Errorf("gap between requests %v after the shift, want 1h", got)
	}
	if got := xs[1].End.Sub(xs[1].Start); got != 2*time.Second {
		t.Errorf("duration %v after the shift, want 2s", got)
	}
	if !xs[2].Start.IsZero() || !xs[2].End.IsZero() {
		t.Errorf("an exchange without times got %v..%v", xs[2].Start, xs[2].End)
	}
}

func TestReadFileFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const harText = `{"log":{"entries":[{"startedDateTime":"2026-11-22T10:00:00Z","request":{"method":"GET","url":"https://a.example/"},"response":{"status":200}}]}}`
	const jsonlText = `{"kind":"request","time":"2026-11-22T10:00:00Z","host":"a.example","status":200}` + "\n"
	tests := []struct {
		name, file, text string
		want             Format
	}{
		{"har by extension", "t.HAR", harText, FormatHAR},
		{"jsonl by extension", "t.ndjson", jsonlText, FormatJSONL},
		{"har by content", "t.json", harText, FormatHAR},
		{"jsonl by content", "t.log", jsonlText, FormatJSONL},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.file)
		if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		xs, format, err := ReadFile(path, Options{})
		if err != nil || format != tc.want || len(xs) != 1 || xs[0].Host != "a.example" {
			t.Errorf("%s: %d exchanges as %q, err %v; want one of a.example as %q", tc.name, len(xs), format, err, tc.want)
		}
	}
	if _, _, err := ReadFile(filepath.Join(dir, "absent.har"), Options{}); !os.IsNotExist(err) {
		t.Errorf("a missing file: err = %v; want a not-exist error", err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFile(bad, Options{}); err == nil || !strings.HasPrefix(err.Error(), bad+": line 1") {
		t.Errorf("a bad line: err = %v; want one naming the file and the line", err)
	}
}

// entry renders one HAR entry for the tests below: a GET of path at second sec, with the given
// request headers and response headers (JSON arrays).
func entry(sec int, path, reqHeaders, respHeaders string) string {
	return fmt.Sprintf(`{"startedDateTime":"2026-11-22T10:00:%02d.000Z","time":1,
	 "request":{"method":"GET","url":"https://shop.example%s","headers":%s},
	 "response":{"status":200,"headers":%s,"content":{"text":""}}}`, sec, path, reqHeaders, respHeaders)
}

func TestReadHARSetCookieLines(t *testing.T) {
	t.Parallel()
	// Browsers export the set-cookie headers of one response as one value, one cookie a line.
	resp := `[{"name":"Set-Cookie","value":"locale=en; Path=/\nJSESSIONID=0AF3C2D1E5B7; Path=/; HttpOnly\r\n\n  theme=dark"},
	 {"name":"Content-Type","value":"text/html"}]`
	xs, err := ReadHAR(strings.NewReader(`{"log":{"version":"1.2","entries":[`+entry(0, "/", "[]", resp)+`]}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range xs[0].ResponseHeaders {
		if h.Name == "set-cookie" {
			got = append(got, h.Value)
		}
	}
	want := []string{"locale=en; Path=/", "JSESSIONID=0AF3C2D1E5B7; Path=/; HttpOnly", "theme=dark"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("a multi-line set-cookie must yield one header per cookie (-want +got):\n%s", diff)
	}
}

func TestReadHARKeepsRequestsDistinct(t *testing.T) {
	t.Parallel()
	// A client that keeps its x-request-id across the hops of a redirect sends one id for
	// three requests; a fourth entry names the id the first renaming would produce.
	id := `[{"name":"X-Request-Id","value":"req-7"}]`
	har := `{"log":{"entries":[` + entry(0, "/old", id, "[]") + "," + entry(1, "/new", id, "[]") + "," +
		entry(2, "/final", id, "[]") + "," + entry(3, "/other", `[{"name":"x-request-id","value":"req-7~2"}]`, "[]") + "," +
		entry(4, "/none", "[]", "[]") + `]}}`
	xs, err := ReadHAR(strings.NewReader(har), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range xs {
		got = append(got, x.RequestID)
	}
	want := []string{"req-7", "req-7~2", "req-7~3", "req-7~2~4", "har-5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request ids must stay distinct, the first use keeping its id (-want +got):\n%s", diff)
	}
}

func TestReadHARVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, har string
		start     time.Time
		status    int
		end       time.Duration
	}{
		{"HAR 1.2", `{"log":{"version":"1.2","entries":[{"startedDateTime":"2026-11-22T10:00:00.250Z","time":12.5,
			"request":{"method":"GET","url":"https://a.example/"},"response":{"status":200,"content":{"text":"x","encoding":""}}}]}}`,
			time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC), 200, 12500 * time.Microsecond},
		{"HAR 1.1 with whole milliseconds and an offset", `{"log":{"version":"1.1","entries":[{"pageref":"page_1","startedDateTime":"2026-11-22T11:00:00.250+01:00","time":12,
			"request":{"method":"GET","url":"https://a.example/","httpVersion":"HTTP/1.1","headersSize":-1,"bodySize":-1},
			"response":{"status":302,"statusText":"Found","content":{"size":0,"mimeType":"text/html"}}}]}}`,
			time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC), 302, 12 * time.Millisecond},
		{"numbers written as strings, offset without colon, byte order mark", "\ufeff" + `{"log":{"version":"1.2","entries":[{"startedDateTime":"2026-11-22T12:00:00.250+0200","time":"7",
			"request":{"method":"GET","url":"https://a.example/"},"response":{"status":"404"}}]}}`,
			time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC), 404, 7 * time.Millisecond},
		{"no version, no time, a huge duration", `{"log":{"entries":[{"time":1e300,
			"request":{"method":"GET","url":"https://a.example/"},"response":{"status":200}}]}}`,
			time.Time{}, 200, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			xs, err := ReadHAR(strings.NewReader(tc.har), Options{})
			if err != nil {
				t.Fatal(err)
			}
			x := xs[0]
			if !x.Start.Equal(tc.start) || x.Status != tc.status || !x.ResponseSeen || x.End.Sub(x.Start) != tc.end && !x.Start.IsZero() {
				t.Errorf("%s: start %v status %d duration %v; want %v, %d, %v", tc.name, x.Start, x.Status, x.End.Sub(x.Start), tc.start, tc.status, tc.end)
			}
		})
	}
	if _, err := ReadHAR(strings.NewReader(`{"log":{"version":"3.0","entries":[]}}`), Options{}); err == nil || !strings.Contains(err.Error(), "not 1.1 or 1.2") {
		t.Errorf("an unknown HAR version must be refused with the versions read; got %v", err)
	}
}

func TestReadHAROddValues(t *testing.T) {
	t.Parallel()
	// A browser extension exported a form parameter whose value is an object, a header whose
	// value is a number and a cookie whose value is null.
	har := `{"log":{"entries":[{"startedDateTime":"2026-11-22T10:00:00Z",
	  "request":{"method":"POST","url":"https://a.example/beacon","headers":[{"name":"X-Count","value":3}],
	   "cookies":[{"name":"sid","value":null}],
	   "postData":{"mimeType":"application/x-www-form-urlencoded","params":[{"name":"e","value":{"k":"v"}}]}},
	  "response":{"status":204}}]}}`
	xs, err := ReadHAR(strings.NewReader(har), Options{})
	if err != nil {
		t.Fatalf("one odd value made the file unreadable: %v", err)
	}
	if v, _ := xs[0].RequestHeader("x-count"); v != "3" {
		t.Errorf("numeric header value = %q; want its JSON text 3", v)
	}
	if string(xs[0].RequestBody) != "e=%7B%22k%22%3A%22v%22%7D" {
		t.Errorf("object form value = %q; want its JSON text, encoded", xs[0].RequestBody)
	}
	if v, _ := xs[0].RequestHeader("cookie"); v != "sid=" {
		t.Errorf("null cookie value gives cookie %q; want sid=", v)
	}
	if _, err := ReadHAR(strings.NewReader(`{"log":{"entries":[{"request":{"headers":[[1]]}}]}}`), Options{}); err == nil {
		t.Error("a header that is not an object must be refused")
	}
}
