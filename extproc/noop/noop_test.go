package noop

import (
	"context"
	"net"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

func TestServer(t *testing.T) {
	t.Parallel()
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, Server{})
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
	client := extprocv3.NewExternalProcessorClient(conn)

	x := &traffic.Exchange{
		Method: "POST", Host: "api.example", Path: "/", RequestBody: []byte("0123456789"),
		RequestTrailers: protomsg.Pairs("x-t", "1"),
		ResponseSeen:    true, Status: 200, ResponseBody: []byte("ok"), ResponseTrailers: protomsg.Pairs("x-u", "2"),
	}
	all := &filterv3.ProcessingMode{
		RequestBodyMode: filterv3.ProcessingMode_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
		RequestTrailerMode: filterv3.ProcessingMode_SEND, ResponseTrailerMode: filterv3.ProcessingMode_SEND,
	}
	cases := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		code codes.Code
	}{
		{name: "every phase inline", msgs: protomsg.Sequence(x, protomsg.Options{Mode: all, ChunkSize: 3})},
		{name: "every phase in observability mode", msgs: protomsg.Sequence(x, protomsg.Options{Mode: all, Observability: true})},
		{name: "no request case", msgs: []*extprocv3.ProcessingRequest{{}}, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := protomsg.Exchange(ctx, client, tc.msgs)
			if status.Code(err) != tc.code {
				t.Fatalf("Exchange error = %v; want code %v", err, tc.code)
			}
			if tc.code != codes.OK {
				return
			}
			var want []*extprocv3.ProcessingResponse
			for _, m := range tc.msgs {
				if r := protomsg.Continue(m); r != nil {
					want = append(want, r)
				}
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answers differ (-want +got):\n%s", diff)
			}
		})
	}
}
