package e2e

import (
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/apisessions/apisessions/e2e/internal/harness"
	"github.com/apisessions/apisessions/envoy"
)

// TestBufferedBodyNamesTheSessionUpstream: with the filter configured to send request bodies
// BUFFERED_PARTIAL, the session a JSON body's token decides reaches the upstream in the
// session header (the answer to the body carries it while Envoy holds the headers), and the
// access log's metadata names it too; the fallback session the request's headers alone would
// give is never sent.
func TestBufferedBodyNamesTheSessionUpstream(t *testing.T) {
	t.Parallel()
	srv, up := startServer(t, seedConfig), startUpstream(t)
	f := startFront(t, srv, up, envoy.ModeInline, func(o *harness.Options) {
		o.Filters.ExtProc.ProcessingMode.RequestBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	})
	alice := client{addr: "198.51.100.61:50001", ua: "alice-app/1.0"}
	login := f.do(t, alice, "POST", "/login", `{"username":"alice","password":"demo"}`)
	token, _ := login.body["token"].(string)
	if login.status != 200 || token == "" {
		t.Fatalf("login answered %d with a token of %d bytes", login.status, len(token))
	}
	loginRec := srv.record(t, login.id)
	// Another client (address, user agent) with alice's token: its headers alone give its own
	// fallback session, the body's token gives the login's.
	other := client{addr: "203.0.113.61:40001", ua: "other-app/2.0"}
	home := f.do(t, other, "GET", "/", "")
	cart := f.do(t, other, "POST", "/api/cart", `{"token":"`+token+`","product_id":"p-2"}`)
	if home.status != 200 || cart.status != 200 {
		t.Fatalf("home %d, cart %d; want 200 both", home.status, cart.status)
	}
	rec, homeRec := srv.record(t, cart.id), srv.record(t, home.id)
	if keyOf(rec) != "param:body_token" || rec["session"] != loginRec["session"] {
		t.Fatalf("cart grouped by %s into %v; want body_token and the login's session %v", keyOf(rec), rec["session"], loginRec["session"])
	}
	if homeRec["session"] == rec["session"] {
		t.Fatalf("the client's fallback session %v is the token's: the test shows nothing", homeRec["session"])
	}
	seen := up.headers(cart.id).Values("x-apisessions-session")
	if len(seen) != 1 || seen[0] != rec["session"] {
		t.Errorf("upstream saw session header %q; want exactly the body's session %v", seen, rec["session"])
	}
	en, _ := f.proxy.Entry(cart.id)
	if md := en.Metadata[envoy.MetadataNamespace]; md["session"] != rec["session"] || md["key"] != "param:body_token" {
		t.Errorf("access log metadata %v; want session %v by param:body_token", md, rec["session"])
	}
	if en.RequestBodySent == 0 || en.RejectedMutations != 0 || en.Outcome != "" {
		t.Errorf("request body bytes sent %d, rejected mutations %d, outcome %q", en.RequestBodySent, en.RejectedMutations, en.Outcome)
	}
}
