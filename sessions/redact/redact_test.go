package redact

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// fakeHash stands in for the engine's hashed parameter form.
func fakeHash(s string) string { return "hmac:<" + s + ">" }

func TestCutTail(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "fragment at the end", in: "abc 41112222", want: "abc "},
		{name: "short fragment kept", in: "abc 411", want: "abc 411"},
		{name: "no fragment", in: "abc def", want: "abc def"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A Redactor belongs to one exchange (it computes its encodings on first use), so
			// each parallel subtest has its own.
			r := New(fakeHash, []Secret{{Clear: "4111222233334444", Hashed: fakeHash("4111222233334444")}}, nil)
			if got := r.cutTail(tc.in); got != tc.want {
				t.Errorf("%s: cutTail(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
			}
		})
	}
}

func TestValueAndPath(t *testing.T) {
	t.Parallel()
	r := New(fakeHash, []Secret{
		{Clear: "tok/secret+1", Hashed: fakeHash("tok/secret+1")},
		{Clear: "42", Hashed: fakeHash("42")},
	}, nil)
	tests := []struct{ name, in, want, wantPath string }{
		{name: "a whole secret", in: "tok/secret+1", want: fakeHash("tok/secret+1"), wantPath: fakeHash("tok/secret+1")},
		{name: "inside a longer string, URL-escaped", in: "/a?t=tok%2Fsecret%2B1", want: "/a?t=" + fakeHash("tok/secret+1"), wantPath: "/a?t=" + fakeHash("tok/secret+1")},
		{name: "a short secret only as a whole path segment", in: "/users/42/x42", want: "/users/42/x42", wantPath: "/users/" + fakeHash("42") + "/x42"},
		{name: "nothing to replace", in: "/health", want: "/health", wantPath: "/health"},
	}
	for _, tc := range tests {
		if got := r.Value(tc.in); got != tc.want {
			t.Errorf("%s: Value(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
		if got := r.Path(tc.in); got != tc.wantPath {
			t.Errorf("%s: Path(%q) = %q, want %q", tc.name, tc.in, got, tc.wantPath)
		}
	}
	var none *Redactor
	if none.Value("tok/secret+1") != "tok/secret+1" || none.Path("/42") != "/42" {
		t.Error("a nil Redactor changed a value")
	}
}

func TestMayHold(t *testing.T) {
	t.Parallel()
	secrets := []Secret{{Clear: "s3cr3t", Hashed: fakeHash("s3cr3t")}}
	for field, want := range map[string]bool{"": false, "/plain": false, "/x/s3cr3t": true, "/x/%73": true} {
		if got := MayHold(secrets, field); got != want {
			t.Errorf("MayHold(%q) = %v, want %v", field, got, want)
		}
	}
}

// TestValueFindsEveryEncoding places one secret in every encoding a client may choose and
// expects only its hashed form where it stood.
func TestValueFindsEveryEncoding(t *testing.T) {
	t.Parallel()
	const secret = "Alice.Secret/é@example.com"
	h := fakeHash(secret)
	percentAll := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, "%%%02x", s[i])
		}
		return b.String()
	}
	unicodeAll := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			fmt.Fprintf(&b, `\u%04X`, r)
		}
		return b.String()
	}
	tests := []struct{ name, form string }{
		{name: "as sent", form: secret},
		{name: "upper case", form: strings.ToUpper(secret)},
		{name: "lower case", form: strings.ToLower(secret)},
		{name: "ASCII case flipped", form: "aLICE.sECRET/é@EXAMPLE.COM"},
		{name: "query escaped", form: url.QueryEscape(secret)},
		{name: "lower-case escapes", form: strings.ToLower(url.QueryEscape(secret))},
		{name: "every byte escaped, lower case", form: percentAll(secret)},
		{name: "double encoded", form: url.QueryEscape(url.QueryEscape(secret))},
		{name: "triple encoded", form: url.PathEscape(url.QueryEscape(url.QueryEscape(secret)))},
		{name: "JSON \\u escapes", form: unicodeAll(secret)},
		{name: "JSON \\u escapes, percent-encoded", form: url.QueryEscape(unicodeAll(secret))},
		{name: "JSON escaped slash", form: strings.ReplaceAll(secret, "/", `\/`)},
		{name: "base64", form: base64.StdEncoding.EncodeToString([]byte(secret))},
		{name: "base64url unpadded", form: base64.RawURLEncoding.EncodeToString([]byte(secret))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New(fakeHash, []Secret{{Clear: secret, Hashed: h}}, nil)
			if got, want := r.Value("pre "+tc.form+" post"), "pre "+h+" post"; got != want {
				t.Errorf("%s: Value(%q) = %q, want %q", tc.name, "pre "+tc.form+" post", got, want)
			}
		})
	}
}

// TestValueFindsSecretsInsideEncodedText covers secrets that are part of a longer encoded
// text: Basic credentials and a base64 token at any alignment.
func TestValueFindsSecretsInsideEncodedText(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-pass"
	for _, tc := range []struct{ name, in string }{
		{name: "Basic credentials", in: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+secret))},
		{name: "base64 after a path", in: "/reset/" + base64.URLEncoding.EncodeToString([]byte("u=7&p="+secret+"&x=1"))},
		{name: "base64 of a space-separated text", in: "t=" + base64.RawStdEncoding.EncodeToString([]byte("ab "+secret))},
	} {
		r := New(fakeHash, []Secret{{Clear: secret, Hashed: fakeHash(secret)}}, nil)
		got := r.Value(tc.in)
		if !strings.Contains(got, fakeHash(secret)) {
			t.Errorf("%s: Value(%q) = %q, want the hashed form in it", tc.name, tc.in, got)
		}
		for run := range base64Runs(got) {
			for off := range 4 {
				if off < len(run.text) && strings.Contains(string(decodeBase64(nil, run.text[off:])), secret) {
					t.Errorf("%s: Value(%q) = %q still encodes the secret", tc.name, tc.in, got)
				}
			}
		}
	}
}

func TestCutTailEncodings(t *testing.T) {
	t.Parallel()
	const secret = "4111/2222/3333/4444"
	tests := []struct{ name, in, want string }{
		{name: "escaped fragment", in: "n=4111%2F2222%2F33", want: "n="},
		{name: "lower-case escapes cut inside an escape", in: "n=4111%2f2222%2", want: "n="},
		{name: "double-encoded fragment", in: "n=4111%252F22", want: "n="},
		{name: "JSON-escaped fragment", in: `{"n":"4111\/2222\/3`, want: `{"n":"`},
		{name: "base64 fragment", in: "b=" + base64.StdEncoding.EncodeToString([]byte(secret))[:12], want: "b="},
		{name: "a short fragment stays", in: "n=411", want: "n=411"},
	}
	for _, tc := range tests {
		r := New(fakeHash, []Secret{{Clear: secret, Hashed: fakeHash(secret)}}, nil)
		if got := r.CutTail(tc.in); got != tc.want {
			t.Errorf("%s: CutTail(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestMayHoldEncodings(t *testing.T) {
	t.Parallel()
	secrets := []Secret{{Clear: "alice@example.com", Hashed: fakeHash("alice@example.com")}}
	for field, want := range map[string]bool{
		"/users/ALICE@EXAMPLE.COM": true,
		"/users/" + base64.RawURLEncoding.EncodeToString([]byte("alice@example.com")): true,
		"/x/" + base64.StdEncoding.EncodeToString([]byte("id=alice@example.com")):     true,
		"/api/v1/orders/12345": false,
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome": false,
		"6f1c2d3e-0000-4000-8000-000000000001":                      false,
	} {
		if got := MayHold(secrets, field); got != want {
			t.Errorf("MayHold(%q) = %v, want %v", field, got, want)
		}
	}
}

// TestMayHoldAllocatesNothing: MayHold runs for every record that has hashed parameters.
func TestMayHoldAllocatesNothing(t *testing.T) {
	secrets := []Secret{{Clear: "tok-41", Hashed: "h"}, {Clear: "user41@example.com", Hashed: "h"}}
	fields := []string{"/api/v1/orders/12345", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "api.example.com", "6f1c2d3e-0000-4000-8000-000000000001"}
	if n := testing.AllocsPerRun(100, func() {
		if MayHold(secrets, fields[0], fields[1], fields[2], fields[3]) {
			t.Error("MayHold is true for fields without a secret")
		}
	}); n != 0 {
		t.Errorf("MayHold allocates %v times per call of 4 fields, want 0", n)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	n := NewNames([]string{"password", "api_key", "token"}, []string{"SSN"})
	for name, want := range map[string]bool{
		"password": true, "Password": true, "new_password": true, "X-Password": true, "newPassword": true,
		"apiKey": true, "x-api-key": true, "API-KEY": true, "csrf_token": true, "X-Auth-Token": true, "ssn": true,
		// Bracketed names (PHP, Rails, qs) nest a field in a form or query: user[password].
		"user[password]": true, "password[]": true, "a[b][api_key]": true, "password[0]": true,
		"user[new-password][]": true, "[token]": true, "user[name]": false, "[]": false, "ids[]": false,
		"passwords": false, "tokens_used": false, "max_tokens": false, "key": false, "email": false, "": false,
	} {
		if got := n.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	var none *Names
	if none.Match("password") || NewNames(nil, []string{"", "-_"}) != nil {
		t.Error("an empty list of names matches")
	}
}

func TestJSONFieldsInCutText(t *testing.T) {
	t.Parallel()
	field := func(k string) bool { return k == "email" || k == "password" }
	r := New(fakeHash, nil, nil)
	tests := []struct{ name, in, want string }{
		{name: "complete members", in: `{"email":"a@b.c","n":1,"password" : "p\"w"}`, want: `{"email":"` + fakeHash("a@b.c") + `","n":1,"password" : "` + fakeHash(`p"w`) + `"}`},
		{name: "cut inside a value", in: `{"user":{"email":"alice@exa`, want: `{"user":{"email":"` + fakeHash("alice@exa") + `"`},
		{name: "cut inside an escape", in: `{"password":"hunter\u00`, want: `{"password":"` + fakeHash("hunter") + `"`},
		{name: "a number and a container", in: `{"password":12345,"email":{"a":[1,`, want: `{"password":"` + fakeHash("12345") + `","email":"` + fakeHash(`{"a":[1,`) + `"`},
		{name: "a key in a value is no key", in: `{"note":"email","x":"password:"}`, want: `{"note":"email","x":"password:"}`},
		{name: "escaped key", in: `{"pass\u0077ord":"s3cr3t!"}`, want: `{"pass\u0077ord":"` + fakeHash("s3cr3t!") + `"}`},
		{name: "cut after the colon", in: `{"email": `, want: `{"email": `},
	}
	for _, tc := range tests {
		if got := r.jsonFields(tc.in, field); got != tc.want {
			t.Errorf("%s: jsonFields(%q)\n got %s\nwant %s", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestMultipartFields(t *testing.T) {
	t.Parallel()
	body := "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2!\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"otp\"\r\n\r\n1234"
	r := New(fakeHash, nil, nil)
	got := r.multipartFields(body, "XyZ", &Targets{Scrub: NewNames([]string{"password", "otp"})})
	want := strings.Replace(strings.Replace(body, "hunter2!", fakeHash("hunter2!"), 1), "\r\n\r\n1234", "\r\n\r\n"+fakeHash("1234"), 1)
	if got != want {
		t.Errorf("multipartFields\n got %q\nwant %q", got, want)
	}
}

// TestAttackContentOddHeaders: header names and values as a hostile client may send them.
func TestAttackContentOddHeaders(t *testing.T) {
	t.Parallel()
	x := &traffic.Exchange{
		Path: "/x",
		RequestHeaders: []traffic.Header{
			{Name: "", Value: "v"}, {Name: ":path", Value: "/x?password=hunter2"}, {Name: "X-Password", Value: "hunter2!"},
			{Name: "x-fwd", Value: "BASIC " + base64.StdEncoding.EncodeToString([]byte("bob:pw"))}, {Name: "x-empty", Value: ""},
		},
	}
	tg := &Targets{Scrub: ScrubNames(config.ScrubFields{Defaults: true, Extra: []string{"path"}})}
	r := New(fakeHash, nil, nil)
	r.Learn(x, tg, 0)
	var a record.Attack
	r.AttackContent(&a, x, tg, 0)
	want := map[string]string{
		"": "v", ":path": "/x?password=" + fakeHash("hunter2"), "x-password": fakeHash("hunter2!"),
		"x-fwd": "BASIC " + fakeHash(base64.StdEncoding.EncodeToString([]byte("bob:pw"))), "x-empty": "",
	}
	if d := cmp.Diff(want, a.Headers); d != "" {
		t.Errorf("attack headers (-want +got):\n%s", d)
	}
}
