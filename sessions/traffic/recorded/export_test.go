package recorded

import (
	"strings"
	"testing"
)

const exportEntry = `{"startedDateTime":"2026-11-22T10:00:00.000Z","time":12.5,
 "request":{"method":"POST","url":"https://shop.example.com/api/login","httpVersion":"","headers":[{"name":"user-agent","value":"ua"}],
  "queryString":[],"cookies":[],"headersSize":-1,"bodySize":39,"postData":{"mimeType":"application/json","text":"{\"password\":\"hmac:cc\"}"}},
 "response":{"status":403,"statusText":"Forbidden","httpVersion":"","headers":[],"cookies":[],"content":{"size":7,"mimeType":""},"redirectURL":"","headersSize":-1,"bodySize":7},
 "cache":{},"timings":{"send":0,"wait":12.5,"receive":0},
 "_session":"s_0011","_part":"2026-11-22","_requestId":"r1","_key":"param:tok","_clientIP":"203.0.113.9","_ja3":"j3",
 "_user":"alice","_claimedRole":"admin","_params":{"tok":"hmac:bb"},"_requestBytes":39,"_responseBytes":7,
 "_malicious":true,"_attack":{"source":"header","types":["sqli"],"headers":{"cookie":"sid=hmac:dd"},"body":"{\"password\":\"hmac:cc\"}"},
 "_protection":{"action":"tag","rule":"r"}}`

func TestReadHARExport(t *testing.T) {
	t.Parallel()
	doc := `{"log":{"version":"1.2","creator":{"name":"apisessions","version":"v1"},"entries":[` + exportEntry + `]}}`
	xs, err := ReadHAR(strings.NewReader(doc), Options{})
	if err != nil || len(xs) != 1 {
		t.Fatalf("ReadHAR = %d exchanges, %v", len(xs), err)
	}
	x := xs[0]
	hv := x.Handover
	if hv == nil || hv.Session != "s_0011" || hv.Part != "2026-11-22" || hv.KeySource != "param" || hv.KeyName != "tok" ||
		hv.User != "alice" || hv.ClaimedRole != "admin" || hv.Params["tok"] != "hmac:bb" || hv.ClientIP != "203.0.113.9" || hv.JA3 != "j3" ||
		!hv.Malicious || hv.Attack == nil || hv.Attack.Types[0] != "sqli" || hv.Attack.Headers["cookie"] != "sid=hmac:dd" {
		t.Fatalf("handover = %+v", hv)
	}
	// The sizes are the stored ones; the kept content is no body that was sent.
	if x.RequestBytes != 39 || x.ResponseBytes != 7 || x.RequestBody != nil || x.Verdict.Action != "tag" || x.RequestID != "r1" || x.Status != 403 {
		t.Errorf("exchange = %+v", x)
	}

	// Only apisessions' own exports are read so: another tool's custom fields are its own.
	other := strings.Replace(doc, `"name":"apisessions"`, `"name":"Firefox"`, 1)
	if xs, err := ReadHAR(strings.NewReader(other), Options{}); err != nil || xs[0].Handover != nil {
		t.Errorf("another creator's entry: %v, handover %+v; want none", err, xs[0].Handover)
	}
	// A malformed custom field loses what it holds, never the file.
	bad := strings.Replace(doc, `"_malicious":true`, `"_malicious":"yes"`, 1)
	if xs, err := ReadHAR(strings.NewReader(bad), Options{}); err != nil || xs[0].Handover == nil || xs[0].Handover.Session != "s_0011" {
		t.Errorf("malformed custom field: %v; want the entry read with its session", err)
	}
	// Values are bounded as the engine bounds what it records.
	long := strings.Replace(doc, `"_user":"alice"`, `"_user":"`+strings.Repeat("é", 1000)+`"`, 1)
	if xs, err := ReadHAR(strings.NewReader(long), Options{}); err != nil || len(xs[0].Handover.User) > maxHandoverValue {
		t.Errorf("long user: %v, %d bytes", err, len(xs[0].Handover.User))
	}
}
