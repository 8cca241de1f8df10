package sessions

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Example verdict sources: Coraza writing its own namespace, and an ext_authz server that
// returns dynamic_metadata in its CheckResponse (Envoy puts it under the filter's namespace).
var testAttacks = config.Attacks{
	Metadata: []config.AttackMetadata{
		{Namespace: "envoy.filters.http.coraza", Key: "malicious", TypesKey: "attack_types", RulesKey: "rule_ids"},
		{Namespace: "envoy.filters.http.ext_authz", Key: "waf_block", TypesKey: "waf_category"},
	},
	ResponseHeader: "x-waf-attack",
}

func TestAttackVerdict(t *testing.T) {
	t.Parallel()
	r := compileAttacks(testAttacks)
	many := make([]any, 1000)
	for i := range many {
		many[i] = strings.Repeat("t", i+1)
	}
	tests := []struct {
		name      string
		meta      map[string]map[string]any
		respHdr   []string
		malicious bool
		want      *record.Attack
	}{
		{name: "nothing reported"},
		{
			name:      "coraza with types and numeric rule ids",
			meta:      map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true, "attack_types": []any{"sqli", "xss", "sqli"}, "rule_ids": []any{942100.0, "941100"}}},
			malicious: true,
			want:      &record.Attack{Source: "metadata:envoy.filters.http.coraza", Types: []string{"sqli", "xss"}, RuleIDs: []string{"942100", "941100"}},
		},
		{
			name:      "ext_authz string verdict, comma-separated types",
			meta:      map[string]map[string]any{"envoy.filters.http.ext_authz": {"waf_block": "blocked", "waf_category": "sqli, rce"}},
			malicious: true,
			want:      &record.Attack{Source: "metadata:envoy.filters.http.ext_authz", Types: []string{"sqli", "rce"}},
		},
		{
			name: "detection only: types without a malicious verdict",
			meta: map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": false, "attack_types": "scanner"}},
			want: &record.Attack{Source: "metadata:envoy.filters.http.coraza", Types: []string{"scanner"}},
		},
		{name: "string false is not malicious", meta: map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": "false"}}},
		{name: "zero is not malicious", meta: map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": 0.0}}},
		{
			name:      "non-zero number is malicious",
			meta:      map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": 5.0}},
			malicious: true,
			want:      &record.Attack{Source: "metadata:envoy.filters.http.coraza"},
		},
		{name: "other namespaces are ignored", meta: map[string]map[string]any{"envoy.filters.http.rbac": {"malicious": true}}},
		{
			name:      "response header with types",
			respHdr:   []string{"x-waf-attack", "sqli,xss"},
			malicious: true,
			want:      &record.Attack{Source: "header:x-waf-attack", Types: []string{"sqli", "xss"}},
		},
		{
			name:      "empty response header still marks",
			respHdr:   []string{"x-waf-attack", ""},
			malicious: true,
			want:      &record.Attack{Source: "header:x-waf-attack"},
		},
		{
			name:      "both sources merge, the first malicious one is the source",
			meta:      map[string]map[string]any{"envoy.filters.http.ext_authz": {"waf_block": true, "waf_category": []any{"bot"}}},
			respHdr:   []string{"x-waf-attack", "sqli"},
			malicious: true,
			want:      &record.Attack{Source: "metadata:envoy.filters.http.ext_authz", Types: []string{"bot", "sqli"}},
		},
		{
			name:      "hostile lists are capped",
			meta:      map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true, "attack_types": many, "rule_ids": []any{map[string]any{"a": 1}, []any{1}, nil}}},
			malicious: true,
			want: &record.Attack{Source: "metadata:envoy.filters.http.coraza", Types: func() []string {
				var out []string
				for i := range maxAttackTypes {
					out = append(out, strings.Repeat("t", i+1))
				}
				return out
			}()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := envoyExchange("POST", "api.example.com", "/x")
			x.Metadata = tc.meta
			if tc.respHdr != nil {
				envoyResponse(x, 403, "", 0, tc.respHdr...)
			}
			mal, got := r.verdict(x)
			if mal != tc.malicious {
				t.Errorf("%s: malicious = %v, want %v", tc.name, mal, tc.malicious)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("%s: verdict (-want +got):\n%s", tc.name, d)
			}
		})
	}
}

// TestAttackContent checks the request content kept for malicious requests: every header and
// the body, with what hashed parameters read, credentials and hashed values in hashed form.
func TestAttackContent(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "api_key", In: config.InRequestHeader, Key: "x-api-key", Hashed: true},
		{Name: "sess", In: config.InRequestCookie, Key: "sess", Group: true, Hashed: true},
		{Name: "query_token", In: config.InRequestQuery, Key: "token", Hashed: true},
		{Name: "email", In: config.InRequestBody, Path: "$.user.email", Hashed: true},
		{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser, Hashed: true},
		{Name: "tenant", In: config.InRequestHeader, Key: "x-tenant"},
	}
	cfg := testConfig(t, params...)
	cfg.Attacks = testAttacks
	e, em, _ := newTestEngine(t, cfg)
	if !e.Needs().RequestBody {
		t.Error("Needs().RequestBody is false with attacks configured; the content of malicious requests needs the body")
	}
	token := jwt(t, map[string]any{"sub": "u-1", "details": map[string]any{"username": "mallory@evil.example"}})
	body := `{"user":{"email":"mallory@evil.example","name":"x' OR 1=1 --"},"note":"contact mallory@evil.example"}`
	mk := func(malicious bool) *traffic.Exchange {
		x := envoyExchange("POST", "api.example.com", "/api/v1/search?token=tok%2Fsecret%2B1&q=1%27+OR+1%3D1",
			"authorization", "Bearer "+token,
			"cookie", "theme=dark; sess=S3SS10N-VALUE",
			"x-api-key", "AK-12345-SECRET",
			"x-tenant", "acme",
			"x-forwarded-for", "203.0.113.9",
			"x-trace", "AK-12345-SECRET/extra")
		buffered(x, "application/json", body, 65536)
		envoyResponse(x, 200, `{"ok":true}`, 65536)
		if malicious {
			x.Metadata = map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true, "attack_types": []any{"sqli"}, "rule_ids": []any{942100.0}}}
		}
		return x
	}

	benign := e.observe(mk(false))
	if benign.Malicious || benign.Attack != nil {
		t.Errorf("a request without a verdict is marked: malicious %v, attack %+v", benign.Malicious, benign.Attack)
	}
	r := e.observe(mk(true))
	if !r.Malicious || r.Attack == nil {
		t.Fatalf("the request with a Coraza verdict is not malicious: %+v", r)
	}
	h := r.Attack.Headers
	want := map[string]string{
		":method":         "POST",
		":scheme":         "https",
		":authority":      "api.example.com",
		":path":           "/api/v1/search?token=" + wantHashed("tok/secret+1") + "&q=1%27+OR+1%3D1",
		"x-request-id":    "6f1c2d3e-0000-4000-8000-000000000001",
		"authorization":   wantHashed("Bearer " + token),
		"cookie":          "theme=dark; sess=" + wantHashed("S3SS10N-VALUE"),
		"x-api-key":       wantHashed("AK-12345-SECRET"),
		"x-tenant":        "acme",
		"x-forwarded-for": "203.0.113.9",
		"x-trace":         wantHashed("AK-12345-SECRET") + "/extra",
		"content-type":    "application/json",
		"content-length":  "106",
	}
	want["content-length"] = h["content-length"]
	if d := cmp.Diff(want, h); d != "" {
		t.Errorf("attack headers (-want +got):\n%s", d)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Attack.Body), &doc); err != nil {
		t.Fatalf("attack body is not JSON any more: %v", err)
	}
	wantDoc := map[string]any{
		"user": map[string]any{"email": wantHashed("mallory@evil.example"), "name": "x' OR 1=1 --"},
		"note": "contact " + wantHashed("mallory@evil.example"),
	}
	if d := cmp.Diff(wantDoc, doc); d != "" {
		t.Errorf("attack body (-want +got):\n%s", d)
	}
	if r.Attack.BodyTruncated {
		t.Error("a whole body is reported truncated")
	}
	if r.Params["username"] != wantHashed("mallory@evil.example") || r.User != wantHashed("mallory@evil.example") {
		t.Errorf("hashed user parameter: params %q, user %q; want the hashed form", r.Params["username"], r.User)
	}

	em.take()
	e.Close()
	var final *record.Session
	for _, s := range em.sessions() {
		if s.Session == r.Session {
			final = s
		}
	}
	if final == nil || final.Malicious != 1 || final.Requests != 2 {
		t.Errorf("session record %+v, want 2 requests of which 1 malicious", final)
	}
}

func TestAttackBodies(t *testing.T) {
	t.Parallel()
	params := []config.Parameter{
		{Name: "pin", In: config.InRequestBody, Key: "pin", Hashed: true},
		{Name: "card", In: config.InRequestBody, Path: "$.card", Hashed: true},
		{Name: "acct", In: config.InRequestBody, Path: "$.acct", Hashed: true},
		{Name: "card_header", In: config.InRequestHeader, Key: "x-card", Hashed: true},
	}
	cfg := testConfig(t, params...)
	cfg.Attacks = testAttacks
	cfg.Traffic.MaxBodyBytes = 64
	e, _, _ := newTestEngine(t, cfg)
	tests := []struct {
		name, ct, body string
		want           string
		truncated      bool
	}{
		{
			name: "urlencoded form: the field and its value elsewhere",
			ct:   "application/x-www-form-urlencoded",
			body: "user=bob&pin=98%2F76&echo=98%2F76",
			want: "user=bob&pin=" + wantHashed("98/76") + "&echo=" + wantHashed("98/76"),
		},
		{
			name: "JSON number value",
			ct:   "application/json",
			body: `{"acct":4111222233334444,"x":[1,2]}`,
			want: `{"acct":"` + wantHashed("4111222233334444") + `","x":[1,2]}`,
		},
		{
			name: "JSON without secrets is kept as sent",
			ct:   "application/json",
			body: `{ "q" : "union select" }`,
			want: `{ "q" : "union select" }`,
		},
		{
			name:      "truncated body: no trailing fragment of a secret survives",
			ct:        "text/plain",
			body:      strings.Repeat("a", 56) + "4111222233334444",
			want:      strings.Repeat("a", 56),
			truncated: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := envoyExchange("POST", "api.example.com", "/pay")
			buffered(x, tc.ct, tc.body, 64)
			x.Metadata = map[string]map[string]any{"envoy.filters.http.coraza": {"malicious": true}}
			if tc.truncated {
				// The card number is known from a header; the body cut at 64 bytes ends
				// in its first half.
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "x-card", Value: "4111222233334444"})
			}
			r := e.observe(x)
			got := r.Attack.Body
			if r.Attack.BodyTruncated != tc.truncated {
				t.Errorf("%s: body_truncated = %v, want %v", tc.name, r.Attack.BodyTruncated, tc.truncated)
			}
			if got != tc.want {
				t.Errorf("%s: attack body\n got %s\nwant %s", tc.name, got, tc.want)
			}
		})
	}
}
