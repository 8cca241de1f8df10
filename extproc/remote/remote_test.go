package remote

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// fakeProcessor names one session for every request that carries a cookie, and none otherwise.
type fakeProcessor struct{}

func (fakeProcessor) InScope(string) bool                { return true }
func (fakeProcessor) Needs() traffic.Needs               { return traffic.Needs{} }
func (fakeProcessor) MaxBodyBytes() int                  { return 0 }
func (fakeProcessor) WantBody(traffic.Side, string) bool { return false }
func (fakeProcessor) Observe(*traffic.Exchange)          {}
func (fakeProcessor) Peek(x *traffic.Exchange) (string, string, record.Key) {
	if _, ok := x.RequestHeader("cookie"); !ok {
		return "", "", record.Key{}
	}
	return "s_1", "2026-11-22", record.Key{Source: "builtin", Name: "cookie:sid"}
}
func (p fakeProcessor) PeekSession(x *traffic.Exchange) (string, record.Key) {
	session, _, key := p.Peek(x)
	return session, key
}

// serve starts an ext_proc server on a local port and returns its address.
func serve(t *testing.T, s extproc.Settings) string {
	t.Helper()
	srv := extproc.New(s)
	gs, err := extproc.NewGRPCServer(srv, extproc.GRPCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	srv.SetServing(true)
	return ln.Addr().String()
}

func TestSend(t *testing.T) {
	t.Parallel()
	request := func(headers ...traffic.Header) *traffic.Exchange {
		return &traffic.Exchange{
			Method: "GET", Scheme: "https", Host: "api.example", Path: "/a",
			RequestHeaders: append([]traffic.Header{{Name: ":method", Value: "GET"}, {Name: ":authority", Value: "api.example"},
				{Name: ":path", Value: "/a"}}, headers...),
			ResponseSeen: true, Status: 200, ResponseHeaders: []traffic.Header{{Name: ":status", Value: "200"}},
		}
	}
	tests := []struct {
		name     string
		metadata bool
		x        *traffic.Exchange
		session  string
		part     string
		key      record.Key
	}{
		{"named", true, request(traffic.Header{Name: "cookie", Value: "sid=1"}), "s_1", "2026-11-22", record.Key{Source: "builtin", Name: "cookie:sid"}},
		{"no session found", true, request(), "", "", record.Key{}},
		// The stream asks for the metadata (AnswerMetadataKey): a server with it off answers it too.
		{"dynamic metadata off", false, request(traffic.Header{Name: "cookie", Value: "sid=1"}), "s_1", "2026-11-22", record.Key{Source: "builtin", Name: "cookie:sid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := Dial(serve(t, extproc.Settings{Processor: fakeProcessor{}, DynamicMetadata: tc.metadata}))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			session, part, key, err := conn.Send(ctx, tc.x)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if session != tc.session || part != tc.part || key != tc.key {
				t.Errorf("Send named %q %q %v; want %q %q %v", session, part, key, tc.session, tc.part, tc.key)
			}
		})
	}
}

func TestSendUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	conn, err := Dial(addr)
	if err != nil {
		t.Fatalf("Dial connects lazily and should not fail: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, _, err := conn.Send(ctx, &traffic.Exchange{Method: "GET", Host: "a.example", Path: "/"}); err == nil {
		t.Error("Send to a closed port succeeded")
	}
}

// Regroups: every response phase asks Peek again.
func (fakeProcessor) Regroups(*traffic.Exchange, bool) bool { return true }
func (fakeProcessor) BodyRegroups(record.Key) bool          { return true }
