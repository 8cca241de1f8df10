package extproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
)

// GRPCOptions configures the gRPC listener side (config server.*).
type GRPCOptions struct {
	// MaxMessageBytes bounds one received ext_proc message; 0 keeps gRPC's default (4 MiB).
	MaxMessageBytes int
	// MaxConcurrentStreams bounds the streams one connection may open; 0 keeps gRPC's default.
	MaxConcurrentStreams uint32
	// MaxStreams bounds the ext_proc streams open at once over all connections; one more is
	// refused with ResourceExhausted. 0 = no bound.
	MaxStreams int
	// StreamIdleTimeout ends an ext_proc stream that received no message for this long. 0 = never.
	StreamIdleTimeout time.Duration
	// MemoryLimitBytes is the resident memory the process may take: as it nears it, streams
	// stop keeping bodies, then new ext_proc streams are refused with ResourceExhausted (see
	// memoryGuard). 0 = no limit, nothing is watched.
	MemoryLimitBytes int64
	// CertFile and KeyFile enable TLS; both or neither.
	CertFile, KeyFile string
	// ClientCAFile enables mTLS: clients must present a certificate signed by one of its CAs.
	ClientCAFile string
	// Token, when set, is required of every call but health, as gRPC metadata
	// "authorization: Bearer <Token>"; a call without it ends with codes.Unauthenticated and
	// counts in Stats.AuthRejected.
	Token string
	// Reflection registers gRPC server reflection, which lists the services to any client.
	Reflection bool

	// sampleMemory replaces the reading of the process's resident memory (tests).
	sampleMemory func() (int64, error)
}

// Keepalive settings. Envoy's HTTP/2 connection_keepalive pings every 30 s; grpc-go's default
// enforcement (one ping per 5 min, none without streams) answers that with GOAWAY too_many_pings.
const (
	keepaliveMinTime = 10 * time.Second
	// keepaliveTime: the server pings an idle Envoy connection after this long to find dead peers.
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
)

// GRPCServer is the gRPC server that carries a Server: ext_proc, health and, when asked for,
// reflection on one listener. It keeps grpc-go out of its callers, which only serve and stop it.
type GRPCServer struct {
	gs     *grpc.Server
	limits *streamLimits // nil: no bounds beyond gRPC's own
}

// NewGRPCServer returns a gRPC server with ext_proc (srv), health (what srv.SetServing sets)
// and, with o.Reflection, reflection registered. The caller listens, serves, and calls
// srv.SetServing(true) once ready.
func NewGRPCServer(srv *Server, o GRPCOptions) (*GRPCServer, error) {
	if srv == nil {
		return nil, errors.New("new grpc server: no ext_proc server")
	}
	if o.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("new grpc server: max message bytes %d is negative", o.MaxMessageBytes)
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// No idle or age limit: Envoy keeps few long-lived connections and every reconnect
			// costs in-flight requests a fail-open.
			Time:    keepaliveTime,
			Timeout: keepaliveTimeout,
		}),
	}
	if o.MaxMessageBytes > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(o.MaxMessageBytes))
	}
	if o.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(o.MaxConcurrentStreams))
	}
	tc, err := serverTLS(o)
	if err != nil {
		return nil, fmt.Errorf("new grpc server: %w", err)
	}
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	if o.Token != "" {
		// Once per stream, before the handler: a digest and a compare, nothing per message.
		// Chained first, so a stream without the token never takes a slot of the limits below.
		a := newTokenAuth(srv, o.Token)
		opts = append(opts, grpc.ChainStreamInterceptor(a.stream), grpc.ChainUnaryInterceptor(a.unary))
	}
	limits := newStreamLimits(srv, o)
	opts = append(opts, limits.options()...)
	opts = append(opts, grpc.ForceServerCodecV2(newCodec()))
	gs := grpc.NewServer(opts...)
	gs.RegisterService(&processDesc, srv)
	healthpb.RegisterHealthServer(gs, srv.health)
	if o.Reflection {
		reflection.Register(gs)
	}
	return &GRPCServer{gs: gs, limits: limits}, nil
}

// Serve accepts connections on ln until Stop or Shutdown, which make it return nil; any other
// end is an error.
func (s *GRPCServer) Serve(ln net.Listener) error { return s.gs.Serve(ln) }

// Stop closes the listeners and every connection at once, ending open streams.
func (s *GRPCServer) Stop() {
	s.gs.Stop()
	s.limits.wait()
}

// CheckTLS loads the certificate files of o as the server would at start, and reports what
// it would refuse.
func CheckTLS(o GRPCOptions) error {
	_, err := serverTLS(o)
	return err
}

// serverTLS loads the certificate files; nil config means plaintext (h2c).
func serverTLS(o GRPCOptions) (*tls.Config, error) {
	if o.CertFile == "" && o.KeyFile == "" {
		if o.ClientCAFile != "" {
			return nil, errors.New("client CA file set without cert_file and key_file; mTLS needs server TLS")
		}
		return nil, nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tls needs both cert_file and key_file")
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls key pair: %w", err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", o.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Shutdown stops the server gracefully, letting open streams finish, and stops it hard when
// ctx ends first.
func (s *GRPCServer) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.gs.Stop()
		<-done
	}
	s.limits.wait()
}

// wireTransport is a gRPC stream of a server with the codec below: messages are decoded from
// the wire straight into a message.
type wireTransport struct{ ss grpc.ServerStream }

func (t wireTransport) recv(m *message) error                      { return t.ss.RecvMsg(m) }
func (t wireTransport) send(r *extprocv3.ProcessingResponse) error { return t.ss.SendMsg(r) }

// codec is gRPC's proto codec, except that it decodes into a message itself. It serves every
// service of the server NewGRPCServer builds; only the ext_proc handler receives messages.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2(grpcproto.Name)} }

func (c codec) Name() string { return c.proto.Name() }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*message)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	// One copy of the message, which its strings and bytes then alias: gRPC reuses the
	// buffers it received it in. gRPC ends the stream with Internal on an error, as it does
	// for a message the proto codec cannot read.
	return m.decode(data.Materialize())
}

// processDesc is the ExternalProcessor service with a handler that receives messages through
// codec. Its name, method and metadata are the generated service's, so clients, health checks
// and reflection see no difference.
var processDesc = grpc.ServiceDesc{
	ServiceName: extprocv3.ExternalProcessor_ServiceDesc.ServiceName,
	HandlerType: (*extprocv3.ExternalProcessorServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Process",
		Handler:       func(srv any, ss grpc.ServerStream) error { return srv.(*Server).serve(ss.Context(), wireTransport{ss}) },
		ServerStreams: true,
		ClientStreams: true,
	}},
	Metadata: extprocv3.ExternalProcessor_ServiceDesc.Metadata,
}
