package extproc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

const testToken = "s3cret-Token_0123456789"

// lockedBuffer is a log destination the server's goroutines may write concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTokenAuth: with GRPCOptions.Token, ext_proc and reflection need "authorization: Bearer
// <token>"; health answers without it; every refusal is Unauthenticated, counted, and logged
// at most once a minute without the token.
func TestTokenAuth(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := New(Settings{Processor: newFake(), Now: fixedNow, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	srv.SetServing(true)
	client, conn := startServer(t, srv, GRPCOptions{Token: testToken, Reflection: true})
	with := func(values ...string) context.Context {
		ctx := testContext(t)
		for _, v := range values {
			ctx = metadata.AppendToOutgoingContext(ctx, TokenMetadataKey, v)
		}
		return ctx
	}
	exchange := func(ctx context.Context) error {
		_, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{}))
		return err
	}
	reflect := func(ctx context.Context) error {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		// A stream the server already ended fails Send with io.EOF; Recv then has the status.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	health := func(ctx context.Context) error {
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: extprocService})
		return err
	}
	watch := func(ctx context.Context) error {
		w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	tests := []struct {
		name    string
		call    func(context.Context) error
		ctx     context.Context
		refused bool
	}{
		{name: "ext_proc with the token", call: exchange, ctx: with("Bearer " + testToken)},
		{name: "ext_proc with the scheme in lower case", call: exchange, ctx: with("bearer " + testToken)},
		{name: "ext_proc with the token among other values", call: exchange, ctx: with("Basic abc", "Bearer "+testToken)},
		{name: "ext_proc without metadata", call: exchange, ctx: with(), refused: true},
		{name: "ext_proc with a wrong token", call: exchange, ctx: with("Bearer " + testToken + "x"), refused: true},
		{name: "ext_proc with a prefix of the token", call: exchange, ctx: with("Bearer " + testToken[:5]), refused: true},
		{name: "ext_proc with the token but another scheme", call: exchange, ctx: with("Basic " + testToken), refused: true},
		{name: "ext_proc with the bare token", call: exchange, ctx: with(testToken), refused: true},
		{name: "reflection without the token", call: reflect, ctx: with(), refused: true},
		{name: "reflection with the token", call: reflect, ctx: with("Bearer " + testToken)},
		{name: "health check without the token", call: health, ctx: with()},
		{name: "health watch without the token", call: watch, ctx: with()},
	}
	refused := 0
	for _, tc := range tests {
		err := tc.call(tc.ctx)
		switch {
		case tc.refused && status.Code(err) != codes.Unauthenticated:
			t.Errorf("%s: %v; want Unauthenticated", tc.name, err)
		case tc.refused && !strings.Contains(status.Convert(err).Message(), "server.grpc_token_file"):
			t.Errorf("%s: the status message %q does not name server.grpc_token_file", tc.name, status.Convert(err).Message())
		case !tc.refused && err != nil:
			t.Errorf("%s: %v; want it served", tc.name, err)
		}
		if tc.refused {
			refused++
		}
	}
	if got := srv.Stats().AuthRejected; got != uint64(refused) {
		t.Errorf("Stats().AuthRejected = %d; want %d", got, refused)
	}
	out := logs.String()
	if n := strings.Count(out, "grpc call refused"); n != 1 {
		t.Errorf("%d warnings about refused calls; want 1 (at most one a minute):\n%s", n, out)
	}
	if strings.Contains(out, testToken[:8]) {
		t.Errorf("the log shows the token:\n%s", out)
	}
}

// BenchmarkTokenCheck is what the token costs a stream: one check when it opens.
func BenchmarkTokenCheck(b *testing.B) {
	a := newTokenAuth(New(Settings{}), testToken)
	// The metadata Envoy's gRPC client sends with each stream, and the token.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		":authority", "apisessions", "content-type", "application/grpc", "te", "trailers",
		"user-agent", "envoy/1.36.0", "x-envoy-internal", "true", "x-forwarded-proto", "http",
		"x-request-id", "0d4f6a1e-3c59-4a1d-9b2e-6c1d0f2a7b88", "grpc-timeout", "5S",
		TokenMetadataKey, "Bearer "+testToken))
	const method = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
	b.ReportAllocs()
	for b.Loop() {
		if err := a.check(ctx, method); err != nil {
			b.Fatal(err)
		}
	}
}
