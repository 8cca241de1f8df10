package sessions

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// TestHashedValuesNeverLeave runs traffic with hashed parameters of every source through the
// engine, with a debug logger and a recording emitter, including a malicious request whose
// content is kept, and searches every record, log line and counter for the clear values in
// any encoding.
func TestHashedValuesNeverLeave(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"header":   "HDR-secret-7781",
		"cookie":   "ck-Secret-99120",
		"query":    "qry/secret+4410",
		"body":     "alice.secret@example.com",
		"claim":    "claim-user-55012",
		"response": "resp-token-33019",
		"path":     "pathsecret8841",
	}
	params := []config.Parameter{
		{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true, Hashed: true},
		{Name: "api_key", In: config.InRequestHeader, Key: "x-api-key", Hashed: true},
		{Name: "sess", In: config.InRequestCookie, Key: "sess", Hashed: true},
		{Name: "query_token", In: config.InRequestQuery, Key: "token", Group: true, Hashed: true},
		{Name: "email", In: config.InRequestBody, Path: "$.email", Hashed: true},
		{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser, Hashed: true},
		{Name: "account", In: config.InRequestPath, Path: "/accounts/{acct}/**", Hashed: true},
	}
	cfg := testConfig(t, params...)
	cfg.Attacks = testAttacks
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	em := &fakeEmitter{}
	hidden := []config.Parameter{{Name: "device", In: config.InRequestHeader, Key: "x-device", Hashed: true}}
	secrets["hidden"] = "device-secret-0042"
	e, err := newEngine(cfg, Settings{Logger: logger, Emitter: em, HashKey: testKey, HiddenParameters: hidden}, false)
	if err != nil {
		t.Fatal(err)
	}
	token := jwt(t, map[string]any{"sub": "u1", "details": map[string]any{"username": secrets["claim"]}})
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var xs []*traffic.Exchange
	// Login: the response returns the token that groups what follows.
	xs = append(xs, envoyResponse(buffered(envoyExchange("POST", "api.example.com", "/login"), "application/json",
		`{"email":"`+secrets["body"]+`","password":"pw"}`, 1<<16), 200, `{"token":"`+secrets["response"]+`"}`, 1<<16))
	// Ordinary requests carrying every kind of secret.
	for i := range 5 {
		x := envoyExchange("GET", "api.example.com",
			"/accounts/"+secrets["path"]+"/orders?token="+url.QueryEscape(secrets["query"])+"&page="+fmt.Sprint(i),
			"authorization", "Bearer "+token,
			"cookie", "theme=dark; sess="+secrets["cookie"],
			"x-api-key", secrets["header"],
			"x-device", secrets["hidden"],
			"user-agent", "agent/"+secrets["header"])
		xs = append(xs, envoyResponse(x, 200, `{"ok":true}`, 1<<16))
	}
	// A malicious request carrying all of them, some in places no parameter reads.
	mal := envoyExchange("POST", "api.example.com",
		"/accounts/"+secrets["path"]+"/transfer?token="+url.QueryEscape(secrets["query"])+"&echo="+url.QueryEscape(secrets["header"]),
		"authorization", "Bearer "+token,
		"cookie", "sess="+secrets["cookie"]+"; copy="+secrets["cookie"],
		"x-api-key", secrets["header"],
		"x-device", secrets["hidden"],
		"x-echo", base64.StdEncoding.EncodeToString([]byte(secrets["header"])),
		"x-forwarded-token", secrets["response"])
	buffered(mal, "application/json", `{"email":"`+secrets["body"]+`","memo":"for `+secrets["query"]+`","nested":{"t":"`+secrets["response"]+`"}}`, 1<<16)
	mal.Metadata = map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true, "attack_types": []any{"sqli"}}}
	// The malicious request's token was returned by this same exchange's response.
	envoyResponse(mal, 403, `{"token":"`+secrets["response"]+`"}`, 1<<16, "x-waf-attack", "sqli")
	xs = append(xs, mal)

	var recs []record.Record
	for i, x := range xs {
		at(x, base.Add(time.Duration(i)*time.Second))
		e.Observe(x)
		e.sweep(base.Add(time.Duration(i)*time.Second + time.Minute))
		recs = append(recs, em.take()...)
	}
	e.Close()
	recs = append(recs, em.take()...)

	var out bytes.Buffer
	malicious := 0
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("record does not marshal: %v", err)
		}
		out.Write(b)
		out.WriteByte('\n')
		if q, ok := r.(*record.Request); ok && q.Malicious && q.Attack != nil && len(q.Attack.Headers) > 0 {
			malicious++
		}
	}
	if malicious != 1 {
		t.Fatalf("%d malicious requests with content, want 1: the test would not cover attack content", malicious)
	}
	if logs.Len() == 0 {
		t.Fatal("no debug log lines: the test would not cover logs")
	}
	out.Write(logs.Bytes())
	fmt.Fprintf(&out, "%+v\n", e.Stats())
	text := out.String()
	if testing.Verbose() {
		t.Log(text)
	}
	for name, v := range secrets {
		quoted, _ := json.Marshal(v)
		for _, form := range []string{
			v, url.QueryEscape(v), url.PathEscape(v), string(quoted[1 : len(quoted)-1]),
			base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		} {
			if strings.Contains(text, form) {
				t.Errorf("the clear %s value appears (as %q) in the records, logs or stats", name, form)
			}
		}
	}
	if !strings.Contains(text, wantHashed(secrets["header"])) {
		t.Error("the hashed form of the header value is missing: the parameters did not work")
	}
}
