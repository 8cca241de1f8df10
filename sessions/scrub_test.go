package sessions

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// malicious marks x malicious by a Coraza verdict.
func malicious(x *traffic.Exchange) *traffic.Exchange {
	x.Metadata = map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true}}
	return x
}

// recordJSON is the record as every sink writes it.
func recordJSON(t *testing.T, rec *record.Request) string {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatalf("record does not marshal: %v", err)
	}
	return string(b)
}

// TestAttackBodyCutKeepsNoSecret: a body longer than max_body_bytes is never parsed, so its
// hashed parameters read nothing; the kept prefix must still show them hashed, found by the
// name of their field, even when the cut fell inside the value.
func TestAttackBodyCutKeepsNoSecret(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t,
		config.Parameter{Name: "email", In: config.InRequestBody, Path: "$.user.email", Hashed: true},
		config.Parameter{Name: "pin", In: config.InRequestBody, Key: "pin", Hashed: true},
		config.Parameter{Name: "card", In: config.InRequestBody, Key: "card", Hashed: true},
	)
	cfg.Attacks = testAttacks
	cfg.Attacks.ScrubFields.Defaults = true
	cfg.Traffic.MaxBodyBytes = 64
	e, _, _ := newTestEngine(t, cfg)
	pad := strings.Repeat("x", 80)
	tests := []struct {
		name, ct, body, path string
		want                 string
		clear                []string // must not appear anywhere in the record
	}{
		{
			name:  "JSON cut inside the value",
			ct:    "application/json",
			body:  `{"user":{"name":"m","email":"mallory.very.long.address@evil.example"},"pad":"` + pad + `"}`,
			want:  `{"user":{"name":"m","email":"` + wantHashed("mallory.very.long.address@evil.exam") + `"`,
			clear: []string{"mallory.very"},
		},
		{
			name:  "JSON cut after the value: the value is learnt and hidden elsewhere too",
			ct:    "application/json",
			body:  `{"user":{"email":"mal@evil.example"},"cc":"mal@evil.example","pad":"` + pad + `"}`,
			path:  "/u/MAL%40EVIL.EXAMPLE/x",
			want:  `{"user":{"email":"` + wantHashed("mal@evil.example") + `"},"cc":"` + wantHashed("mal@evil.example") + `","pa`,
			clear: []string{"mal@evil.example", "MAL%40EVIL"},
		},
		{
			name:  "form cut inside the value",
			ct:    "application/x-www-form-urlencoded",
			body:  "a=1&b=2&card=4111%202222%203333%204444&pad=" + pad,
			want:  "a=1&b=2&card=" + wantHashed("4111 2222 3333 4444") + "&pad=" + strings.Repeat("x", 21),
			clear: []string{"4111"},
		},
		{
			name:  "form cut inside the hashed value",
			ct:    "application/x-www-form-urlencoded",
			body:  "user=bob&note=" + strings.Repeat("n", 40) + "&pin=98765432109876" + pad,
			want:  "user=bob&note=" + strings.Repeat("n", 40) + "&pin=" + wantHashed("98765"),
			clear: []string{"98765"},
		},
		{
			name:  "a well-known secret field in a cut JSON body",
			ct:    "application/json",
			body:  `{"login":"bob","newPassword":"correct horse battery staple","pad":"` + pad + `"}`,
			want:  `{"login":"bob","newPassword":"` + wantHashed("correct horse battery staple") + `","pad`,
			clear: []string{"correct horse"},
		},
		{
			name:  "a well-known secret field in a cut text body",
			ct:    "text/plain",
			body:  `debug: {"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"} ` + pad,
			want:  `debug: {"access_token": "` + wantHashed("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.si") + `"`,
			clear: []string{"eyJhbGciOiJIUzI1NiJ9"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.path
			if path == "" {
				path = "/submit"
			}
			x := malicious(buffered(envoyExchange("POST", "api.example.com", path), tc.ct, tc.body, 64))
			rec := e.observe(x)
			if !rec.Attack.BodyTruncated {
				t.Errorf("%s: body_truncated is false for a body cut at 64 bytes", tc.name)
			}
			if rec.Attack.Body != tc.want {
				t.Errorf("%s: attack body\n got %s\nwant %s", tc.name, rec.Attack.Body, tc.want)
			}
			text := recordJSON(t, rec)
			for _, c := range tc.clear {
				if strings.Contains(text, c) {
					t.Errorf("%s: %q appears in the record: %s", tc.name, c, text)
				}
			}
		})
	}
}

// TestScrubFields: the content of a malicious request hides the values of well-known secret
// fields nobody configured, wherever they are sent, and wherever else they are echoed.
func TestScrubFields(t *testing.T) {
	t.Parallel()
	mk := func() *traffic.Exchange {
		x := envoyExchange("POST", "api.example.com", "/login?api_key=AK-998877&page=2&SSN=123-45-6789",
			"cookie", "theme=dark; access_token=tok-cookie-5566",
			"x-api-key", "AK-header-4433",
			"x-csrf-token", "csrf-1122-3344",
			"x-echo", base64.StdEncoding.EncodeToString([]byte("pw=hunter2-horse")))
		buffered(x, "application/json", `{"username":"bob","password":"hunter2-horse","profile":{"client_secret":{"k":"v-secret-0099"}},"note":"hi"}`, 1<<16)
		return malicious(x)
	}
	cases := []struct {
		name     string
		scrub    config.ScrubFields
		hidden   []string
		readable []string
	}{
		{
			name:     "defaults",
			scrub:    config.ScrubFields{Defaults: true},
			hidden:   []string{"AK-998877", "tok-cookie-5566", "AK-header-4433", "csrf-1122-3344", "hunter2-horse", "v-secret-0099", base64.StdEncoding.EncodeToString([]byte("pw=hunter2-horse"))},
			readable: []string{"123-45-6789", "theme=dark", "bob", "page=2"},
		},
		{
			name:     "defaults and extra names",
			scrub:    config.ScrubFields{Defaults: true, Extra: []string{"ssn"}},
			hidden:   []string{"AK-998877", "hunter2-horse", "123-45-6789"},
			readable: []string{"page=2"},
		},
		{
			name:  "off",
			scrub: config.ScrubFields{},
			// x-api-key is a built-in identifier: its value stays hidden either way.
			readable: []string{"AK-998877", "tok-cookie-5566", "hunter2-horse"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Attacks = testAttacks
			cfg.Attacks.ScrubFields = tc.scrub
			e, _, _ := newTestEngine(t, cfg)
			text := recordJSON(t, e.observe(mk()))
			for _, s := range tc.hidden {
				if strings.Contains(text, s) {
					t.Errorf("%s: %q is in the record, want it hashed: %s", tc.name, s, text)
				}
			}
			for _, s := range tc.readable {
				if !strings.Contains(text, s) {
					t.Errorf("%s: %q is missing from the record, want it readable: %s", tc.name, s, text)
				}
			}
		})
	}
}

// TestSecretsInAnyEncoding places the value of a hashed parameter, read from one header, in
// the other parts of a request in the encodings clients use, in an ordinary and in a
// malicious request.
func TestSecretsInAnyEncoding(t *testing.T) {
	t.Parallel()
	const secret = "Key.Secret-7781"
	cfg := testConfig(t, config.Parameter{Name: "api_key", In: config.InRequestHeader, Key: "x-key", Hashed: true})
	cfg.Attacks = testAttacks
	cfg.Attacks.ScrubFields = config.ScrubFields{}
	e, _, _ := newTestEngine(t, cfg)
	lowerEscaped := strings.ToLower(url.PathEscape("/" + secret))
	mk := func() *traffic.Exchange {
		x := envoyExchange("GET", strings.ToLower(secret)+".example.com",
			"/a"+strings.ReplaceAll(lowerEscaped, "-", "%2d")+"/b?q="+url.QueryEscape(url.QueryEscape("x "+secret)),
			"x-key", secret,
			"user-agent", "agent/"+strings.ToUpper(secret),
			"x-"+strings.ToLower(secret), "1",
			"x-forwarded-authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("bob:"+secret)),
			"x-json", `{"k":"\u004b\u0065\u0079.Secret-7781"}`)
		x.RequestID = "req/" + base64.RawURLEncoding.EncodeToString([]byte(secret))
		return x
	}
	for _, mal := range []bool{false, true} {
		x := mk()
		if mal {
			malicious(x)
		}
		rec := e.observe(x)
		if mal != (rec.Attack != nil) {
			t.Fatalf("malicious %v: the record's attack is %+v", mal, rec.Attack)
		}
		text := strings.ToLower(recordJSON(t, rec))
		for _, form := range []string{
			strings.ToLower(secret), strings.ToLower(url.QueryEscape(secret)), "key%252esecret",
			base64.RawURLEncoding.EncodeToString([]byte(secret))[:12], base64.StdEncoding.EncodeToString([]byte("bob:" + secret))[:16],
		} {
			if strings.Contains(text, strings.ToLower(form)) {
				t.Errorf("malicious %v: %q appears in the record: %s", mal, form, text)
			}
		}
		if rec.Host != wantHashed(secret)+".example.com" || !strings.Contains(rec.Path, wantHashed(secret)) {
			t.Errorf("malicious %v: host %q, path %q; want the hashed form in both", mal, rec.Host, rec.Path)
		}
	}
}

// TestScrubFieldsDocumented keeps the list in docs/configuration.md equal to the code's.
func TestScrubFieldsDocumented(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/configuration.md")
	_, after, ok := strings.Cut(doc, "the list is\n\n")
	list, _, ok2 := strings.Cut(after, "\n\nand `extra`")
	if !ok || !ok2 {
		t.Fatal(`docs/configuration.md has no "the list is" paragraph ending before "and ` + "`extra`" + `"`)
	}
	var documented []string
	for name := range strings.SplitSeq(strings.ReplaceAll(list, "\n", " "), ",") {
		documented = append(documented, strings.Trim(strings.TrimSpace(name), "`"))
	}
	if strings.Join(documented, " ") != strings.Join(config.DefaultScrubFields, " ") {
		t.Errorf("docs/configuration.md lists the scrub fields\n%v\nthe code has\n%v", documented, config.DefaultScrubFields)
	}
}

// TestQueryKept checks that ordinary request records keep the query string with the values of
// hashed query parameters and of scrubbed names hashed, secrets found elsewhere in it
// replaced, and the rest as sent.
func TestQueryKept(t *testing.T) {
	t.Parallel()
	const token, key = "tok-Secret-5521", "Key.Secret-7781"
	cfg := testConfig(t,
		config.Parameter{Name: "token", In: config.InRequestQuery, Key: "token", Hashed: true},
		config.Parameter{Name: "api_key", In: config.InRequestHeader, Key: "x-key", Hashed: true})
	e, _, _ := newTestEngine(t, cfg)
	for _, tc := range []struct{ name, path, want string }{
		{"no query", "/items", ""},
		{"plain", "/items?page=2&sort=name", "page=2&sort=name"},
		{"hashed parameter", "/items?page=2&token=" + url.QueryEscape(token), "page=2&token=" + wantHashed(token)},
		{"secret in another pair", "/items?q=" + url.QueryEscape("x "+key), "q=x+" + wantHashed(key)},
		{"scrubbed name", "/items?password=hunter2hunter2&a=1", "password=" + wantHashed("hunter2hunter2") + "&a=1"},
		{"escaped name", "/items?%74oken=" + token, "%74oken=" + wantHashed(token)},
		{"bracketed name", "/items?user[password]=hunter2hunter2", "user[password]=" + wantHashed("hunter2hunter2")},
		{"semicolon pair", "/items?a=1;password=hunter2hunter2;b=2", "a=1;password=" + wantHashed("hunter2hunter2") + ";b=2"},
		{"semicolon plain", "/items?q=a;b&c=d;e", "q=a;b&c=d;e"},
		{"escaped brackets", "/items?user%5Bpassword%5D=hunter2hunter2", "user%5Bpassword%5D=" + wantHashed("hunter2hunter2")},
	} {
		x := envoyExchange("GET", "api.example.com", tc.path, "x-key", key)
		rec := e.observe(x)
		if rec.Query != tc.want {
			t.Errorf("%s: query %q; want %q", tc.name, rec.Query, tc.want)
		}
		if rec.Path != "/items" {
			t.Errorf("%s: path %q; want /items", tc.name, rec.Path)
		}
		if text := recordJSON(t, rec); strings.Contains(text, token) || strings.Contains(text, "hunter2hunter2") {
			t.Errorf("%s: a secret appears in the record: %s", tc.name, text)
		}
	}
	// A query longer than the cap is cut, and a secret's start at the cut is removed.
	long := "/items?a=" + strings.Repeat("x", maxQuery-len("a=")-6) + "&q=" + key
	rec := e.observe(envoyExchange("GET", "api.example.com", long, "x-key", key))
	if len(rec.Query) > maxQuery || strings.Contains(rec.Query, key[:5]) {
		t.Errorf("a long query is %d bytes and ends %q; want at most %d and no start of the secret", len(rec.Query), rec.Query[len(rec.Query)-10:], maxQuery)
	}
}
