package sessions

import (
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
)

func TestHasherMatchesHMACSHA256(t *testing.T) {
	t.Parallel()
	h := newHasher(testKey)
	for _, v := range []string{"aaa", "", "ünïcødé", strings.Repeat("x", 5000)} {
		if got, want := h.sessionID(v), wantID(v); got != want {
			t.Errorf("sessionID(%d bytes) = %s, want %s", len(v), got, want)
		}
		if got, want := h.param(v), wantHashed(v); got != want {
			t.Errorf("param(%d bytes) = %s, want %s", len(v), got, want)
		}
		if got, want := h.fallbackID(v), wantFallbackID(v); got != want {
			t.Errorf("fallbackID(%d bytes) = %s, want %s", len(v), got, want)
		}
	}
	// Fixed vectors, computed outside Go from docs/records.md, guard the exact forms replicas
	// and stores must agree on.
	for _, tc := range []struct{ name, got, want string }{
		{name: "session id of aaa", got: h.sessionID("aaa"), want: "s_a5e90a101afac7247a79"},
		{name: "hashed parameter aaa", got: h.param("aaa"), want: "hmac:68b5b3a65c9776aac9bb352dcf89dc54"},
		{name: "fallback id of ip=", got: h.fallbackID("ip="), want: "s_81bf11895c4411d0a0d2"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if h.fallbackID("ip=") == h.sessionID("ip=") {
		t.Error("a fallback join and an equal grouping value share a session id; fallback ids must be domain-separated")
	}
}

// TestSessionIDRevealsNoHashedValue proves the domain separation of session ids and hashed
// parameters: a client that chooses a grouping value (any client can) learns the session id
// of its guess, and that id must not confirm the guess against a hashed user name or email
// that records show, nor be computable from the hash key without the session label.
func TestSessionIDRevealsNoHashedValue(t *testing.T) {
	t.Parallel()
	h := newHasher(testKey)
	for _, v := range []string{"alice@example.com", "aaa", "", "admin"} {
		id, hashed := h.sessionID(v), h.param(v)
		if strings.HasPrefix(strings.TrimPrefix(hashed, "hmac:"), strings.TrimPrefix(id, "s_")) {
			t.Errorf("the session id of %q (%s) is a prefix of its hashed form (%s)", v, id, hashed)
		}
		if undivided := "s_" + hmacHex(testKey, v, 10); id == undivided {
			t.Errorf("the session id of %q is HMAC-SHA256 under the hash key itself, not under Ks", v)
		}
		if undivided := "hmac:" + hmacHex(testKey, v, 16); hashed == undivided {
			t.Errorf("the hashed form of %q is HMAC-SHA256 under the hash key itself, not under Kp", v)
		}
	}
	// The engine's records carry the same forms.
	e, _, _ := newTestEngine(t, testConfig(t, config.Parameter{Name: "email", In: config.InRequestHeader, Key: "x-email", Group: true, Hashed: true}))
	rec := e.observe(exchange("GET", "/", "x-email", "alice@example.com"))
	if rec.Session != wantID("alice@example.com") || rec.Params["email"] != wantHashed("alice@example.com") {
		t.Errorf("record session %s, params %v; want %s and email %s", rec.Session, rec.Params, wantID("alice@example.com"), wantHashed("alice@example.com"))
	}
}

func TestHasherConcurrent(t *testing.T) {
	t.Parallel()
	h := newHasher(testKey)
	want := wantID("concurrent")
	done := make(chan string)
	for range 8 {
		go func() {
			var got string
			for range 200 {
				got = h.sessionID("concurrent")
			}
			done <- got
		}()
	}
	for range 8 {
		if got := <-done; got != want {
			t.Fatalf("concurrent sessionID = %s, want %s", got, want)
		}
	}
}
