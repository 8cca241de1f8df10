package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// seedConfig is the grouping example of the product documentation: a login returns a token in
// its JSON body, later requests send it in the query or in a JSON body. Context parameters add
// the user from a bearer JWT, a hashed email and a product id.
const seedConfig = `
parameters:
  - name: login_token
    in: response.body
    path: $.token
    group: true
    hashed: true
  - name: query_token
    in: request.query
    key: token
    group: true
    hashed: true
  - name: body_token
    in: request.body
    path: $.token
    group: true
    hashed: true
  - name: username
    in: request.header
    key: authorization
    decode: jwt
    path: $.details.username
    type: user
  - name: email
    in: request.body
    path: $.email
    hashed: true
  - name: product_id
    in: response.body
    path: $.product_id
sessions:
  fallback: [ip, user_agent, ja3]
# The scenarios read the session and part from the proxy's access log, as Envoy's would.
inline:
  dynamic_metadata: true
`

// bufferedBodies is the mode a generated inline bootstrap uses when parameters read both bodies.
var bufferedBodies = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_BUFFERED_PARTIAL,
	ResponseBodyMode:   filterv3.ProcessingMode_BUFFERED_PARTIAL,
}

// streamedBodies is what an observability bootstrap uses: BUFFERED bodies are not sent there.
var streamedBodies = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_STREAMED,
	ResponseBodyMode:   filterv3.ProcessingMode_STREAMED,
}

func exchange(id, method, path string, reqHeaders []traffic.Header, reqBody string, status int, respBody string) *traffic.Exchange {
	hs := append(protomsg.Pairs("user-agent", "curl/8.5.0"), reqHeaders...)
	if reqBody != "" {
		hs = append(hs, protomsg.Pairs("content-type", "application/json")...)
	}
	x := &traffic.Exchange{
		RequestID: id, Start: time.Now().UTC(), Method: method, Scheme: "https", Host: "api.example.com", Path: path,
		SourceAddress: "203.0.113.7:41000", RequestHeaders: hs, RequestBody: []byte(reqBody),
	}
	if status != 0 {
		x.ResponseSeen, x.Status = true, status
		if respBody != "" {
			x.ResponseHeaders = protomsg.Pairs("content-type", "application/json")
			x.ResponseBody = []byte(respBody)
		}
	}
	return x
}

// TestProcessorEndToEnd drives Envoy-shaped streams for each grouping example into the real
// server and checks the records it writes on stdout.
func TestProcessorEndToEnd(t *testing.T) {
	s := startServer(t, seedConfig)

	// The server answers on both ports.
	resp, err := http.Get("http://" + s.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz answered %d", resp.StatusCode)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health: %v %v, want SERVING", hr.GetStatus(), err)
	}
	client := extprocv3.NewExternalProcessorClient(conn)

	bearer := testutil.JWT(`{"sub":"932","details":{"username":"john-doe@company-001.com"}}`)
	steps := []struct {
		name string
		x    *traffic.Exchange
		o    protomsg.Options
	}{
		{"login returns the token", exchange("r-login", "POST", "/login", nil, `{"in":"bbb"}`, 200, `{"token":"aaa"}`), protomsg.Options{Mode: bufferedBodies}},
		{"token in a JSON body", exchange("r-body", "POST", "/api/cart", nil, `{"in":"ccc","token":"aaa","email":"john@example.com"}`, 200, `{"product_id":"p-77"}`), protomsg.Options{Mode: bufferedBodies}},
		{"token in the query, observability mode, chunked", exchange("r-query", "GET", "/api/items?token=aaa", nil, "", 200, `{"items":[]}`), protomsg.Options{Mode: streamedBodies, Observability: true, ChunkSize: 3}},
		{"PHP session cookie", exchange("r-cookie", "GET", "/account", protomsg.Pairs("cookie", "theme=dark; PHPSESSID=php-1"), "", 200, ""), protomsg.Options{}},
		{"bearer JWT", exchange("r-jwt", "GET", "/api/orders/42", protomsg.Pairs("authorization", "Bearer "+bearer), "", 200, ""), protomsg.Options{}},
		{"nothing but IP and user agent", exchange("r-anon", "GET", "/", nil, "", 404, ""), protomsg.Options{}},
	}
	for _, st := range steps {
		if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(st.x, st.o)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}

	// A stream Envoy resets after the request headers (client gone): a partial record.
	reset := exchange("r-reset", "GET", "/slow?token=aaa", nil, "", 0, "")
	rctx, rcancel := context.WithCancel(ctx)
	stream, err := client.Process(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(protomsg.Sequence(reset, protomsg.Options{})[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("answer to the request headers of the reset stream: %v", err)
	}
	rcancel()

	byID := map[string]map[string]any{}
	for _, id := range []string{"r-login", "r-body", "r-query", "r-cookie", "r-jwt", "r-anon", "r-reset"} {
		byID[id] = s.stdout.WaitFor(t, "request "+id, func(m map[string]any) bool {
			return m["kind"] == "request" && m["request_id"] == id
		})
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("shutdown exit status %d, want 0", code)
	}

	key := func(id string) string {
		k, _ := byID[id]["key"].(map[string]any)
		return k["source"].(string) + ":" + k["name"].(string)
	}
	wantKeys := map[string]string{
		"r-login": "param:login_token", "r-body": "param:body_token", "r-query": "param:query_token",
		"r-cookie": "builtin:cookie:PHPSESSID", "r-jwt": "builtin:jwt:sub", "r-anon": "fallback:ip+user_agent",
		"r-reset": "param:query_token",
	}
	for id, want := range wantKeys {
		if got := key(id); got != want {
			t.Errorf("%s: grouping key %s, want %s", id, got, want)
		}
	}
	token := byID["r-login"]["session"]
	for _, id := range []string{"r-body", "r-query", "r-reset"} {
		if byID[id]["session"] != token {
			t.Errorf("%s: session %v, want the login's session %v (same token value)", id, byID[id]["session"], token)
		}
	}
	for _, id := range []string{"r-cookie", "r-jwt"} {
		if byID[id]["session"] == token {
			t.Errorf("%s: landed in the token session", id)
		}
	}
	// The login carried no identifier: its token joined the session of its IP + User-Agent
	// (sessions.stitch.login), so a later request from them without the token is in it too.
	if byID["r-anon"]["session"] != token {
		t.Errorf("r-anon: session %v, want the login's %v (the login linked its token to the client's fallback)", byID["r-anon"]["session"], token)
	}
	if byID["r-login"]["linked"] != float64(1) {
		t.Errorf("r-login: linked %v, want 1 (its token)", byID["r-login"]["linked"])
	}
	if cf, _ := byID["r-body"]["continued_from"].(map[string]any); cf["kind"] != "login" || cf["session"] == token {
		t.Errorf("r-body: continued_from %v, want the token's own session, by login", cf)
	}
	if u := byID["r-jwt"]["user"]; u != "john-doe@company-001.com" {
		t.Errorf("r-jwt: user %v, want the JWT's details.username", u)
	}
	params, _ := byID["r-body"]["params"].(map[string]any)
	if e, _ := params["email"].(string); !strings.HasPrefix(e, "hmac:") || len(e) != len("hmac:")+32 {
		t.Errorf("r-body: hashed email exported as %q, want hmac:<32 hex>", e)
	}
	if p := params["product_id"]; p != "p-77" {
		t.Errorf("r-body: product_id %v, want p-77 from the response body", p)
	}
	if byID["r-reset"]["partial"] != true || byID["r-reset"]["status"] != float64(0) {
		t.Errorf("r-reset: partial %v status %v, want a partial record with status 0", byID["r-reset"]["partial"], byID["r-reset"]["status"])
	}
	if byID["r-anon"]["status"] != float64(404) || byID["r-anon"]["client_ip"] != "203.0.113.7" {
		t.Errorf("r-anon: status %v client_ip %v", byID["r-anon"]["status"], byID["r-anon"]["client_ip"])
	}
	out := s.stdout.String()
	for _, secret := range []string{"aaa", "john@example.com"} {
		if strings.Contains(out, `"`+secret+`"`) {
			t.Errorf("the hashed value %q appears in clear in the records", secret)
		}
	}

	// Shutdown ended every part with a final session record; the token session has five
	// requests (the anonymous one included) and one linked value.
	final := s.stdout.WaitFor(t, "the token session's final record", func(m map[string]any) bool {
		return m["kind"] == "session" && m["session"] == token && m["final"] == true
	})
	if final["requests"] != float64(5) || final["linked"] != float64(1) {
		t.Errorf("token session: %v requests and %v linked values in its final record, want 5 and 1", final["requests"], final["linked"])
	}
}
