package protomsg

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"
)

// scripted answers each message with answer(req); a nil answer sends nothing.
type scripted struct {
	extprocv3.UnimplementedExternalProcessorServer
	answer func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse
	end    error
}

func (s scripted) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return s.end
		}
		if err != nil {
			return err
		}
		if r := s.answer(req); r != nil {
			if err := stream.Send(r); err != nil {
				return err
			}
		}
	}
}

func client(t *testing.T, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	t.Helper()
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	lis := bufconn.Listen(1 << 16)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

func TestExchange(t *testing.T) {
	t.Parallel()
	inline := Sequence(postX("0123456789"), Options{ChunkSize: 5})
	observe := Sequence(getX(), Options{Observability: true})
	wrongCase := func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return Continue(ResponseTrailers(nil))
	}
	immediate := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{Body: []byte("denied")}}}
	cases := []struct {
		name    string
		srv     scripted
		msgs    []*extprocv3.ProcessingRequest
		want    []*extprocv3.ProcessingResponse
		wantErr string
		code    codes.Code
		// timeout bounds the exchange when the server never answers.
		timeout time.Duration
	}{
		{
			name: "inline: one matching answer per message",
			srv:  scripted{answer: Continue},
			msgs: inline,
			want: []*extprocv3.ProcessingResponse{Continue(inline[0]), Continue(inline[1])},
		},
		{
			name: "observability: nothing expected, everything sent",
			srv:  scripted{answer: Continue},
			msgs: observe,
		},
		{
			name: "observability: answers a server sends anyway are returned",
			srv:  scripted{answer: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return Continue(inline[0]) }},
			msgs: observe,
			want: []*extprocv3.ProcessingResponse{
				{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}},
				{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}},
			},
		},
		{
			name:    "a wrong answer case is spurious",
			srv:     scripted{answer: wrongCase},
			msgs:    inline,
			want:    []*extprocv3.ProcessingResponse{wrongCase(nil)},
			wantErr: "spurious",
		},
		{
			name: "an immediate response ends the exchange",
			srv:  scripted{answer: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return immediate }},
			msgs: inline,
			want: []*extprocv3.ProcessingResponse{immediate},
		},
		{
			name:    "a final error status is returned",
			srv:     scripted{answer: Continue, end: status.Error(codes.Internal, "boom")},
			msgs:    inline,
			want:    []*extprocv3.ProcessingResponse{Continue(inline[0]), Continue(inline[1])},
			wantErr: "boom",
			code:    codes.Internal,
		},
		{
			name:    "a server that never answers: Exchange waits for the context, as Envoy waits for message_timeout",
			srv:     scripted{answer: func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return nil }},
			msgs:    inline[:1],
			timeout: 200 * time.Millisecond,
			wantErr: "DeadlineExceeded",
			code:    codes.DeadlineExceeded,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := 10 * time.Second
			if tc.timeout > 0 {
				timeout = tc.timeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			got, err := Exchange(ctx, client(t, tc.srv), tc.msgs)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Exchange error = %v; want one containing %q", err, tc.wantErr)
			}
			if tc.wantErr == "spurious" && !errors.Is(err, ErrSpurious) {
				t.Errorf("Exchange error %v is not ErrSpurious", err)
			}
			if tc.code != codes.OK && status.Code(err) != tc.code {
				t.Errorf("Exchange error code = %v; want %v", status.Code(err), tc.code)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answers differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	reqs := []*extprocv3.ProcessingRequest{
		RequestHeaders(nil, true), RequestBody(nil, true), RequestTrailers(nil),
		ResponseHeaders(nil, true), ResponseBody(nil, true), ResponseTrailers(nil),
	}
	for i, req := range reqs {
		for j, other := range reqs {
			if got, want := Answers(req, Continue(other)), i == j; got != want {
				t.Errorf("Answers(message %d, answer to message %d) = %v; want %v", i, j, got, want)
			}
		}
		if Answers(req, &extprocv3.ProcessingResponse{}) {
			t.Errorf("an empty answer is accepted for message %d; Envoy calls it spurious", i)
		}
	}
	if Continue(WithObservability(RequestHeaders(nil, true))) != nil || Continue(&extprocv3.ProcessingRequest{}) != nil {
		t.Error("Continue returned an answer for a message that needs none")
	}
}

// lingering answers every message and then, after the client's last message, holds the
// stream open until it is reset: a server with work left after its last answer.
type lingering struct {
	extprocv3.UnimplementedExternalProcessorServer
	ended chan error
}

func (s lingering) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			s.ended <- err
			return nil
		}
		if err := stream.Send(Continue(req)); err != nil {
			s.ended <- err
			return nil
		}
	}
}

// TestPlay: Play returns once the last inline answer arrives and resets the stream, as Envoy
// does, where Exchange would wait for the server's status; in observability mode it drains
// the stream like Exchange.
func TestPlay(t *testing.T) {
	t.Parallel()
	inline := Sequence(postX("0123456789"), Options{ChunkSize: 5})
	observe := Sequence(getX(), Options{Observability: true})
	cases := []struct {
		name     string
		msgs     []*extprocv3.ProcessingRequest
		answers  int
		wantCode codes.Code
	}{
		{name: "inline: answers returned, the stream reset", msgs: inline, answers: len(inline), wantCode: codes.Canceled},
		{name: "observability: half-closed, the server sees the end", msgs: observe, wantCode: codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := lingering{ended: make(chan error, 1)}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Play(ctx, client(t, srv), tc.msgs)
			if err != nil {
				t.Fatalf("Play: %v", err)
			}
			if len(got) != tc.answers && tc.answers > 0 {
				t.Errorf("%d answers; want %d", len(got), tc.answers)
			}
			select {
			case end := <-srv.ended:
				if tc.wantCode == codes.OK && !errors.Is(end, io.EOF) {
					t.Errorf("server saw %v; want io.EOF", end)
				}
				if tc.wantCode != codes.OK && status.Code(end) != tc.wantCode {
					t.Errorf("server saw %v; want %v", end, tc.wantCode)
				}
			case <-ctx.Done():
				t.Fatal("the server never saw the stream end")
			}
		})
	}
}
