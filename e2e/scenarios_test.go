package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/e2e/internal/harness"
	"github.com/apisessions/apisessions/envoy"
)

// env is one apisessions server with the demo API behind two front proxies: one configured
// by the generated inline bootstrap, one by the observability bootstrap.
type env struct {
	srv        *server
	up         *upstream
	inline     *front
	obs        *front
	dayClock   *front // inline, with a clock the test moves across midnight
	secretsOut []string
}

// fingerprintConfig groups anonymous clients by User-Agent and TLS fingerprints only, so a
// client keeps its session when its IP address changes.
const fingerprintConfig = `
sessions:
  builtin_keys: true
  fallback: [user_agent, ja3, ja4]
`

// TestScenarios drives real HTTP clients through the Envoy-faithful proxy into apisessions and
// checks the records it writes and what the upstream and the access log saw.
func TestScenarios(t *testing.T) {
	t.Parallel()
	e := &env{srv: startServer(t, seedConfig), up: startUpstream(t)}
	e.inline = startFront(t, e.srv, e.up, envoy.ModeInline, nil)
	e.obs = startFront(t, e.srv, e.up, envoy.ModeObservability, func(o *harness.Options) { o.ChunkSize = 7 })
	e.dayClock = startFront(t, e.srv, e.up, envoy.ModeInline, nil)

	alice := client{addr: "198.51.100.10:50001", ua: "alice-app/1.0"}
	// Log in once; the scenarios reuse the credentials the demo API hands out.
	login := e.inline.do(t, alice, "POST", "/login", `{"username":"alice","password":"demo"}`)
	if login.status != 200 {
		t.Fatalf("login answered %d", login.status)
	}
	token, _ := login.body["token"].(string)
	jwt, _ := login.body["access_token"].(string)
	cookie := login.header.Get("set-cookie")
	sid, _, _ := strings.Cut(strings.TrimPrefix(cookie, "PHPSESSID="), ";")
	if token == "" || jwt == "" || sid == "" {
		t.Fatalf("login gave token %d bytes, jwt %d bytes, cookie %q", len(token), len(jwt), cookie)
	}
	e.secretsOut = append(e.secretsOut, token, "alice@example.com", "4111111111111111")
	loginRec := e.srv.record(t, login.id)

	scenarios := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"seed example: the login token groups the login, the query and the JSON body", func(t *testing.T) {
			if k := keyOf(loginRec); k != "param:login_token" {
				t.Errorf("login grouped by %s, want param:login_token", k)
			}
			le, _ := e.inline.proxy.Entry(login.id)
			if le.ResponseBodySent == 0 || le.RejectedOverrides != 0 {
				t.Errorf("login: %d response body bytes sent, %d overrides rejected; want the JSON body asked for and accepted", le.ResponseBodySent, le.RejectedOverrides)
			}
			items := e.inline.do(t, alice, "GET", "/api/items?token="+token, "")
			cart := e.inline.do(t, alice, "POST", "/api/cart", `{"token":"`+token+`","product_id":"p-2","email":"alice@example.com"}`)
			if items.status != 200 || cart.status != 200 {
				t.Fatalf("items %d, cart %d; want 200 both", items.status, cart.status)
			}
			for id, want := range map[string]string{items.id: "param:query_token", cart.id: "param:body_token"} {
				rec := e.srv.record(t, id)
				if k := keyOf(rec); k != want {
					t.Errorf("grouped by %s, want %s", k, want)
				}
				if rec["session"] != loginRec["session"] {
					t.Errorf("%s: session %v, want the login's %v", want, rec["session"], loginRec["session"])
				}
				// The cart's request headers named the client's fallback session; its body's
				// token decides, and the answer at the response headers says so.
				en, _ := e.inline.proxy.Entry(id)
				if md := en.Metadata[envoy.MetadataNamespace]; md["session"] != rec["session"] || md["part"] != rec["part"] {
					t.Errorf("%s: access log metadata %v; want the record's session %v part %v", want, md, rec["session"], rec["part"])
				}
			}
			ce, _ := e.inline.proxy.Entry(cart.id)
			// One override per direction: the JSON request body, then the JSON response body.
			if ce.ModeOverrides != 2 || ce.RequestBodySent == 0 || ce.ResponseBodySent == 0 {
				t.Errorf("cart: %d overrides, %d/%d body bytes sent; want both JSON bodies asked for", ce.ModeOverrides, ce.RequestBodySent, ce.ResponseBodySent)
			}
		}},
		{"a body no parameter can read is not asked for", func(t *testing.T) {
			r := e.inline.do(t, alice, "POST", "/api/cart", "plain words", "content-type", "text/plain")
			en, _ := e.inline.proxy.Entry(r.id)
			if en.RequestBodySent != 0 || en.ModeOverrides != 1 || en.ResponseBodySent == 0 {
				t.Errorf("text body: %d overrides, %d request / %d response body bytes sent; want only the JSON answer asked for", en.ModeOverrides, en.RequestBodySent, en.ResponseBodySent)
			}
		}},
		{"cookie session (PHPSESSID) across IP addresses", func(t *testing.T) {
			a := e.inline.do(t, alice, "GET", "/account", "", "cookie", "PHPSESSID="+sid)
			b := e.inline.do(t, client{addr: "192.0.2.99:40000", ua: alice.ua}, "GET", "/account", "", "cookie", "theme=dark; PHPSESSID="+sid)
			if a.status != 200 || b.status != 200 {
				t.Fatalf("account answered %d and %d", a.status, b.status)
			}
			ra, rb := e.srv.record(t, a.id), e.srv.record(t, b.id)
			if keyOf(ra) != "builtin:cookie:PHPSESSID" || ra["session"] != rb["session"] {
				t.Errorf("keys %s/%s sessions %v/%v; want one PHPSESSID session", keyOf(ra), keyOf(rb), ra["session"], rb["session"])
			}
		}},
		{"bearer JWT session with the user from its claims", func(t *testing.T) {
			o := e.inline.do(t, alice, "GET", "/api/orders", "", "authorization", "Bearer "+jwt)
			p := e.inline.do(t, client{addr: "203.0.113.5:1234", ua: "other"}, "POST", "/api/payments", `{"amount":12.5,"card":"4111111111111111"}`, "authorization", "Bearer "+jwt)
			if o.status != 200 || p.status != 201 {
				t.Fatalf("orders %d, payments %d", o.status, p.status)
			}
			ro, rp := e.srv.record(t, o.id), e.srv.record(t, p.id)
			if keyOf(ro) != "builtin:jwt:sub" || ro["session"] != rp["session"] {
				t.Errorf("keys %s/%s sessions %v/%v; want one jwt:sub session", keyOf(ro), keyOf(rp), ro["session"], rp["session"])
			}
			if ro["user"] != "alice" {
				t.Errorf("user %v, want alice from details.username", ro["user"])
			}
		}},
		{"IP + User-Agent fallback, X-Forwarded-For not trusted (observability mode)", func(t *testing.T) {
			c := client{addr: "198.51.100.77:1000", ua: "curl/8.5.0"}
			a := e.obs.do(t, c, "GET", "/", "", "x-forwarded-for", "10.9.9.9")
			b := e.obs.do(t, client{addr: "198.51.100.77:1001", ua: c.ua}, "GET", "/", "", "x-forwarded-for", "10.1.1.1")
			other := e.obs.do(t, client{addr: "198.51.100.77:1002", ua: "wget/1.21"}, "GET", "/", "")
			moved := e.obs.do(t, client{addr: "198.51.100.78:1000", ua: c.ua}, "GET", "/", "")
			ra, rb := e.srv.record(t, a.id), e.srv.record(t, b.id)
			if keyOf(ra) != "fallback:ip+user_agent" || ra["session"] != rb["session"] || ra["client_ip"] != "198.51.100.77" {
				t.Errorf("key %s, sessions %v/%v, client_ip %v; want one ip+user_agent session of 198.51.100.77", keyOf(ra), ra["session"], rb["session"], ra["client_ip"])
			}
			for _, r := range []reply{other, moved} {
				if e.srv.record(t, r.id)["session"] == ra["session"] {
					t.Errorf("another user agent or IP joined the session")
				}
			}
		}},
		{"observability mode: chunked STREAMED body carries the token", func(t *testing.T) {
			r := e.obs.do(t, alice, "POST", "/api/cart", `{"product_id":"p-1","token":"`+token+`"}`)
			rec := e.srv.record(t, r.id)
			if keyOf(rec) != "param:body_token" || rec["session"] != loginRec["session"] {
				t.Errorf("key %s session %v; want the login's session through body_token", keyOf(rec), rec["session"])
			}
			if en, _ := e.obs.proxy.Entry(r.id); en.Metadata != nil || en.UpstreamHeaders.Get("x-apisessions-session") != "" {
				t.Errorf("observability mode changed the request or wrote metadata")
			}
		}},
		{"inline header and dynamic metadata, a forged header replaced", func(t *testing.T) {
			r := e.inline.do(t, alice, "GET", "/account", "", "cookie", "PHPSESSID="+sid, "x-apisessions-session", "s_forged")
			rec := e.srv.record(t, r.id)
			seen := e.up.headers(r.id).Values("x-apisessions-session")
			if len(seen) != 1 || seen[0] != rec["session"] {
				t.Errorf("upstream saw session header %q, want exactly the record's %v", seen, rec["session"])
			}
			en, _ := e.inline.proxy.Entry(r.id)
			md := en.Metadata[envoy.MetadataNamespace]
			if md["session"] != rec["session"] || md["part"] != rec["part"] || md["key"] != "builtin:cookie:PHPSESSID" {
				t.Errorf("access log metadata %v; want session %v part %v key builtin:cookie:PHPSESSID", md, rec["session"], rec["part"])
			}
			if en.RejectedMutations != 0 || en.Outcome != "" {
				t.Errorf("rejected mutations %d, outcome %q; want none", en.RejectedMutations, en.Outcome)
			}
		}},
		{"a login stitches the visit before it; the access log has the final id", func(t *testing.T) {
			bob := client{addr: "198.51.100.40:4000", ua: "bob-browser/2.0"}
			home := e.inline.do(t, bob, "GET", "/", "")
			in := e.inline.do(t, bob, "POST", "/login", `{"username":"bob","password":"demo"}`)
			c := strings.TrimPrefix(in.header.Get("set-cookie"), "PHPSESSID=")
			bobSID, _, _ := strings.Cut(c, ";")
			// The link is made when the login's stream ends, which Envoy may report after the
			// client already has the response: wait for the login's record, as a client's next
			// click would in practice (a request sent before that is not stitched).
			rl := e.srv.record(t, in.id)
			after := e.inline.do(t, bob, "GET", "/account", "", "cookie", "PHPSESSID="+bobSID)
			rh, ra := e.srv.record(t, home.id), e.srv.record(t, after.id)
			if rl["session"] != rh["session"] || ra["session"] != rh["session"] {
				t.Errorf("sessions before, at and after the login: %v, %v, %v; want one", rh["session"], rl["session"], ra["session"])
			}
			if cf, _ := ra["continued_from"].(map[string]any); cf["kind"] != "login" || cf["session"] == rh["session"] {
				t.Errorf("the request after the login continued from %v; want the cookie's own session, by login", ra["continued_from"])
			}
			if n, _ := rl["linked"].(float64); n < 1 {
				t.Errorf("the login linked %v values; want its cookie and tokens", rl["linked"])
			}
			// A second client behind the same address and user agent: the fallback session was
			// joined by bob's login, so this login starts a session of its own, which only the
			// response says. The response-phase answer carries that final id to the access log.
			carol := e.inline.do(t, bob, "POST", "/login", `{"username":"carol","password":"demo"}`)
			rc := e.srv.record(t, carol.id)
			if rc["session"] == rh["session"] {
				t.Fatalf("the second login joined the first client's session %v", rh["session"])
			}
			for _, r := range []reply{in, carol} {
				rec := e.srv.record(t, r.id)
				en, _ := e.inline.proxy.Entry(r.id)
				if md := en.Metadata[envoy.MetadataNamespace]; md["session"] != rec["session"] || md["part"] != rec["part"] {
					t.Errorf("access log metadata %v; want the final session %v part %v", md, rec["session"], rec["part"])
				}
			}
		}},
		{"day split with an injected clock", func(t *testing.T) {
			c := client{addr: "198.51.100.30:3000", ua: "night-owl"}
			e.dayClock.clock.Set(time.Date(2026, 10, 13, 23, 59, 50, 0, time.UTC))
			before := e.dayClock.do(t, c, "GET", "/account", "", "cookie", "PHPSESSID=night-1")
			// The stream ends after the client has its response; a request whose stream ends
			// after the next day's joins that day's part (out of order requests join the live
			// part), so wait for its record as a client's next click would.
			rb := e.srv.record(t, before.id)
			e.dayClock.clock.Set(time.Date(2026, 10, 14, 0, 0, 10, 0, time.UTC))
			after := e.dayClock.do(t, c, "GET", "/account", "", "cookie", "PHPSESSID=night-1")
			ra := e.srv.record(t, after.id)
			if rb["session"] != ra["session"] || rb["part"] != "2026-10-13" || ra["part"] != "2026-10-14" {
				t.Errorf("session %v/%v parts %v/%v; want one session split into 2026-10-13 and 2026-10-14", rb["session"], ra["session"], rb["part"], ra["part"])
			}
			e.srv.stdout.WaitFor(t, "the final record of the first day", func(m map[string]any) bool {
				return m["kind"] == "session" && m["session"] == rb["session"] && m["part"] == "2026-10-13" && m["final"] == true
			})
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, sc.run)
	}

	t.Run("hashed parameters never appear in clear", func(t *testing.T) {
		rec := e.srv.stdout.WaitFor(t, "a record with the hashed email", func(m map[string]any) bool {
			p, _ := m["params"].(map[string]any)
			return p["email"] != nil
		})
		if email, _ := rec["params"].(map[string]any)["email"].(string); !strings.HasPrefix(email, "hmac:") {
			t.Errorf("email exported as %q, want hmac:…", email)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.obs.proxy.Wait(ctx); err != nil {
			t.Fatalf("observability side streams did not finish: %v", err)
		}
		if code := e.srv.stop(t); code != 0 {
			t.Errorf("shutdown exit status %d", code)
		}
		out := e.srv.stdout.String() + e.srv.stderr.String()
		for _, secret := range e.secretsOut {
			if strings.Contains(out, secret) {
				t.Errorf("a hashed value (%d bytes) appears in clear in the records or logs", len(secret))
			}
		}
	})
}

// TestFingerprintFallback: with the fallback built from User-Agent and JA3/JA4, a client that
// changes its IP address keeps its session, and a client-sent fingerprint header is ignored.
func TestFingerprintFallback(t *testing.T) {
	t.Parallel()
	srv := startServer(t, fingerprintConfig)
	f := startFront(t, srv, startUpstream(t), envoy.ModeInline, nil)
	phone := client{addr: "198.51.100.1:5000", ua: "shop-app/2.1", ja3: "e7d705a3286e19ea42f587b344ee6865", ja4: "t13d1516h2_8daaf6152771_02713d6af862"}
	a := f.do(t, phone, "GET", "/", "")
	phone.addr = "203.0.113.200:6000" // the phone moved from Wi-Fi to mobile data
	b := f.do(t, phone, "GET", "/", "")
	other := f.do(t, client{addr: phone.addr, ua: phone.ua, ja3: "0cce74b0d9b7f8528fb2181588d23793", ja4: "t13d1715h2_5b57614c22b0_3d5424432f57"}, "GET", "/", "")
	forged := f.do(t, client{addr: phone.addr, ua: phone.ua}, "GET", "/", "", "x-client-ja3", phone.ja3, "x-client-ja4", phone.ja4)

	ra, rb := srv.record(t, a.id), srv.record(t, b.id)
	if keyOf(ra) != "fallback:user_agent+ja3+ja4" || ra["session"] != rb["session"] {
		t.Errorf("keys %s/%s sessions %v/%v; want one user_agent+ja3+ja4 session across addresses", keyOf(ra), keyOf(rb), ra["session"], rb["session"])
	}
	if ra["ja4"] != phone.ja4 || ra["client_ip"] == rb["client_ip"] {
		t.Errorf("ja4 %v, client_ip %v/%v", ra["ja4"], ra["client_ip"], rb["client_ip"])
	}
	if srv.record(t, other.id)["session"] == ra["session"] {
		t.Error("a client with other fingerprints joined the session")
	}
	rf := srv.record(t, forged.id)
	if rf["ja3"] != nil || rf["session"] == ra["session"] {
		t.Errorf("a client-sent fingerprint header survived: ja3 %v, session %v", rf["ja3"], rf["session"])
	}
}
