package sessions

import (
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// TestHandover replays exported requests: the stored grouping, user, parameters and verdict
// come back as stored (hashed values not hashed again), and the session is keyed apart from
// every value a client could send.
func TestHandover(t *testing.T) {
	t.Parallel()
	e, _, _ := newTestEngine(t, testConfig(t,
		config.Parameter{Name: "tok", In: config.InRequestHeader, Key: "x-tok", Group: true, Hashed: true},
		config.Parameter{Name: "who", In: config.InRequestHeader, Key: "x-who", Type: config.TypeUser}))
	hv := &traffic.Handover{Session: "s_0011", Part: "2026-11-22", KeySource: "param", KeyName: "tok",
		User: "hmac:aa", Params: map[string]string{"tok": "hmac:bb"}, ClientIP: "203.0.113.9",
		Malicious: true, Attack: &traffic.HandoverAttack{Source: "header", Types: []string{"sqli"}, Body: "q=hmac:bb"}}
	// The headers a live request would be grouped by are not read: the export holds their
	// stored forms, whose hash would be another value.
	x := exchange("POST", "/login?q=1", "x-tok", "hmac:bb", "x-who", "mallory")
	x.Handover = hv
	rec := e.observe(x)
	want := "s_" + hmacHex(derivedKey("apisessions/handover/v1"), "s_0011/2026-11-22", 10)
	if rec.Session != want || rec.Key.String() != "param:tok" || rec.User != "hmac:aa" || rec.Params["tok"] != "hmac:bb" ||
		rec.ClientIP != "203.0.113.9" || !rec.Malicious || rec.Attack == nil || rec.Attack.Body != "q=hmac:bb" || rec.Path != "/login" {
		t.Errorf("handover record = %+v; want session %s and the stored fields", rec, want)
	}
	// No value a live request carries reaches a handover session.
	for _, v := range []string{"s_0011/2026-11-22", "s_0011", want} {
		if live := e.observe(exchange("GET", "/", "x-tok", v)); live.Session == rec.Session {
			t.Errorf("the live value %q reaches the handover session %s", v, rec.Session)
		}
	}
	// Another part of the export is another session; the same part, the same one.
	x2 := exchange("GET", "/")
	x2.Handover = &traffic.Handover{Session: "s_0011", Part: "2026-11-23"}
	if got := e.observe(x2).Session; got == rec.Session {
		t.Errorf("another exported part shares session %s", got)
	}
	x3 := exchange("GET", "/")
	x3.Handover = &traffic.Handover{Session: "s_0011", Part: "2026-11-22"}
	if got := e.observe(x3); got.Session != rec.Session || got.Malicious || got.User != "" {
		t.Errorf("the same exported part = %+v; want session %s, nothing else carried over", got, rec.Session)
	}
}
