package sessions

import (
	"strings"
	"testing"
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
		if id, hashed := h.sessionAndParam(v); id != wantID(v) || hashed != wantHashed(v) {
			t.Errorf("sessionAndParam(%d bytes) = %s, %s; want %s, %s", len(v), id, hashed, wantID(v), wantHashed(v))
		}
		if got, want := h.fallbackID(v), wantFallbackID(v); got != want {
			t.Errorf("fallbackID(%d bytes) = %s, want %s", len(v), got, want)
		}
	}
	// A fixed vector guards the exact form replicas must agree on.
	if got, want := h.sessionID("aaa"), "s_"+hmacHex(testKey, "aaa", 10); len(got) != 22 || got != want {
		t.Errorf("sessionID(aaa) = %q, want %q (22 characters)", got, want)
	}
	if h.fallbackID("ip=") == h.sessionID("ip=") {
		t.Error("a fallback join and an equal grouping value share a session id; fallback ids must be domain-separated")
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
