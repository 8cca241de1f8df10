package extproc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// TestKeepalive runs in real time: keepalive enforcement reads the wall clock. Envoy pings an
// idle connection every 30 s; a grpc-go server with default enforcement sends GOAWAY
// too_many_pings on the third ping that comes sooner than 5 min after the previous one. The
// checks only wait, so they run side by side in goroutines rather than as parallel subtests,
// which -parallel (GOMAXPROCS) would serialise.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes 31 s of wall time")
	}
	// The pinger sends four pings 10.2 s apart on an idle connection, the cadence the policy
	// must allow; the control server with grpc-go's defaults shows that the check bites.
	ours, err := NewGRPCServer(New(Settings{}), GRPCOptions{})
	if err != nil {
		t.Fatalf("NewGRPCServer: %v", err)
	}
	pingers := []struct {
		name       string
		server     *grpc.Server
		wantGoAway bool
	}{
		{name: "pings 10s apart are accepted", server: ours.gs},
		{name: "control: grpc-go's default policy answers them with GOAWAY", server: grpc.NewServer(), wantGoAway: true},
	}
	var wg sync.WaitGroup
	for _, p := range pingers {
		lis := bufconn.Listen(1 << 16)
		go func() { _ = p.server.Serve(lis) }()
		t.Cleanup(p.server.Stop)
		wg.Go(func() {
			goAway, err := pingIdle(lis, 4, 10200*time.Millisecond)
			if err != nil {
				t.Errorf("%s: %v", p.name, err)
			} else if goAway != p.wantGoAway {
				t.Errorf("%s: GOAWAY after pings = %v; want %v", p.name, goAway, p.wantGoAway)
			}
		})
	}
	defer wg.Wait()

	// A grpc-go client pinging every 10 s stays connected and working past 25 s.
	srv := New(Settings{Processor: newFake(), Now: fixedNow})
	gs, err := NewGRPCServer(srv, GRPCOptions{})
	if err != nil {
		t.Fatalf("NewGRPCServer: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn := dialBuf(t, lis, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	client := extprocv3.NewExternalProcessorClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
		t.Fatalf("first exchange: %v", err)
	}
	if s := conn.GetState(); s != connectivity.Ready {
		t.Fatalf("connection state after the first exchange = %v; want READY", s)
	}
	wait, stop := context.WithTimeout(ctx, 25*time.Second)
	defer stop()
	if conn.WaitForStateChange(wait, connectivity.Ready) {
		t.Fatalf("connection left READY (now %v) while idle with keepalive pings", conn.GetState())
	}
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
		t.Fatalf("exchange after 25s: %v", err)
	}
}

// pingIdle opens a bare HTTP/2 connection, sends n pings gap apart and reports whether the
// server sent GOAWAY instead of acknowledging them.
func pingIdle(lis *bufconn.Listener, n int, gap time.Duration) (bool, error) {
	conn, err := lis.Dial()
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	var wmu sync.Mutex // the framer's writes come from the reader (acks) and the pinger
	fr := http2.NewFramer(conn, conn)
	write := func(f func() error) error {
		wmu.Lock()
		defer wmu.Unlock()
		return f()
	}
	if err := write(func() error {
		if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		return fr.WriteSettings()
	}); err != nil {
		return false, fmt.Errorf("write preface: %w", err)
	}
	acks := make(chan [8]byte, n)
	goAway := make(chan struct{})
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = write(fr.WriteSettingsAck)
				}
			case *http2.PingFrame:
				if f.IsAck() {
					acks <- f.Data
				}
			case *http2.GoAwayFrame:
				close(goAway)
				return
			}
		}
	}()
	for i := range n {
		if i > 0 {
			select {
			case <-time.After(gap):
			case <-goAway:
				return true, nil
			}
		}
		data := [8]byte{byte(i + 1)}
		if err := write(func() error { return fr.WritePing(false, data) }); err != nil {
			return false, fmt.Errorf("write ping %d: %w", i, err)
		}
		select {
		case got := <-acks:
			if got != data {
				return false, fmt.Errorf("ping %d acknowledged with %v; want %v", i, got, data)
			}
		case <-goAway:
			return true, nil
		case <-time.After(5 * time.Second):
			return false, fmt.Errorf("ping %d not acknowledged within 5s", i)
		}
	}
	// The server queues GOAWAY right after the acknowledgement of the offending ping.
	select {
	case <-goAway:
		return true, nil
	case <-time.After(time.Second):
		return false, nil
	}
}

// extprocService is the ext_proc service's full name as clients and health checks write it.
const extprocService = "envoy.service.ext_proc.v3.ExternalProcessor"

func TestHealth(t *testing.T) {
	t.Parallel()
	srv := New(Settings{})
	_, conn := startServer(t, srv, GRPCOptions{})
	hc := healthpb.NewHealthClient(conn)
	ctx := testContext(t)
	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check %q: %v", service, err)
		}
		if r.GetStatus() != want {
			t.Errorf("health of %q = %v; want %v", service, r.GetStatus(), want)
		}
	}
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	check(extprocService, healthpb.HealthCheckResponse_NOT_SERVING)
	srv.SetServing(true)
	check("", healthpb.HealthCheckResponse_SERVING)
	check(extprocService, healthpb.HealthCheckResponse_SERVING)
	srv.SetServing(false)
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
}

func TestReflection(t *testing.T) {
	t.Parallel()
	list := func(o GRPCOptions) (map[string]bool, error) {
		_, conn := startServer(t, New(Settings{}), o)
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(testContext(t))
		if err != nil {
			return nil, err
		}
		// A Send that meets a stream the server has already ended returns io.EOF;
		// the status that ended it comes from Recv.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		r, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		got := map[string]bool{}
		for _, s := range r.GetListServicesResponse().GetService() {
			got[s.GetName()] = true
		}
		return got, nil
	}
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		if _, err := list(GRPCOptions{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("reflection without GRPCOptions.Reflection: %v; want Unimplemented", err)
		}
	})
	t.Run("on when asked for", func(t *testing.T) {
		t.Parallel()
		got, err := list(GRPCOptions{Reflection: true})
		if err != nil {
			t.Fatalf("list services: %v", err)
		}
		for _, want := range []string{extprocService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !got[want] {
				t.Errorf("reflection lists %v; want it to include %s", got, want)
			}
		}
	})
}

func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	client, _ := startServer(t, New(Settings{Processor: newFake()}), GRPCOptions{MaxMessageBytes: 1024})
	big := protomsg.RequestHeaders(pairs(":authority", "api.example", "x-big", strings.Repeat("a", 4096)), true)
	_, err := protomsg.Exchange(testContext(t), client, msgs(big))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("exchange with a 4 KiB message against a 1 KiB limit: %v; want ResourceExhausted", err)
	}
}

// testPKI writes a CA, a server certificate for "apisessions.test" and a client certificate.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	clientCert                tls.Certificate
	otherCAFile, notPEMFile   string
	missingFile               string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{pool: x509.NewCertPool()}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("generate key: %v", err)
		}
		return k
	}
	writePEM := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		return path
	}
	serial := int64(0)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey, key *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatalf("create certificate: %v", err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse certificate: %v", err)
		}
		return c
	}
	caKey := newKey()
	ca := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil, caKey)
	p.caFile = writePEM("ca.pem", "CERTIFICATE", ca.Raw)
	p.pool.AddCert(ca)

	srvKey := newKey()
	srvCert := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "apisessions.test"}, DNSNames: []string{"apisessions.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey, srvKey)
	p.certFile = writePEM("server.pem", "CERTIFICATE", srvCert.Raw)
	srvDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	p.keyFile = writePEM("server-key.pem", "EC PRIVATE KEY", srvDER)

	cliKey := newKey()
	cliCert := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "envoy"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey, cliKey)
	p.clientCert = tls.Certificate{Certificate: [][]byte{cliCert.Raw}, PrivateKey: cliKey}

	otherKey := newKey()
	other := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil, otherKey)
	p.otherCAFile = writePEM("other-ca.pem", "CERTIFICATE", other.Raw)
	p.notPEMFile = filepath.Join(dir, "not.pem")
	if err := os.WriteFile(p.notPEMFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatalf("write: %v", err)
	}
	p.missingFile = filepath.Join(dir, "missing.pem")
	return p
}

func TestTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cases := []struct {
		name       string
		opts       GRPCOptions
		clientCert bool
		wantErr    bool
	}{
		{name: "TLS without client certificates", opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile}},
		{name: "mTLS with a client certificate from the CA", clientCert: true,
			opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile}},
		{name: "mTLS refuses a client without certificate", wantErr: true,
			opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile}},
		{name: "mTLS refuses a certificate from another CA", clientCert: true, wantErr: true,
			opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.otherCAFile}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs, err := NewGRPCServer(New(Settings{Processor: newFake()}), tc.opts)
			if err != nil {
				t.Fatalf("NewGRPCServer: %v", err)
			}
			lis := bufconn.Listen(1 << 20)
			go func() { _ = gs.Serve(lis) }()
			t.Cleanup(gs.Stop)
			tc2 := &tls.Config{RootCAs: pki.pool, ServerName: "apisessions.test", MinVersion: tls.VersionTLS12}
			if tc.clientCert {
				tc2.Certificates = []tls.Certificate{pki.clientCert}
			}
			conn, err := grpc.NewClient("passthrough:///bufnet",
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(credentials.NewTLS(tc2)))
			if err != nil {
				t.Fatalf("grpc.NewClient: %v", err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			_, err = protomsg.Exchange(testContext(t), extprocv3.NewExternalProcessorClient(conn),
				protomsg.Sequence(getExchange(), protomsg.Options{}))
			if (err != nil) != tc.wantErr {
				t.Fatalf("exchange error = %v; want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestNewGRPCServerErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cases := []struct {
		name string
		srv  *Server
		opts GRPCOptions
		want string
	}{
		{name: "no server", want: "no ext_proc server"},
		{name: "negative message size", srv: New(Settings{}), opts: GRPCOptions{MaxMessageBytes: -1}, want: "negative"},
		{name: "cert without key", srv: New(Settings{}), opts: GRPCOptions{CertFile: pki.certFile}, want: "both cert_file and key_file"},
		{name: "client CA without server TLS", srv: New(Settings{}), opts: GRPCOptions{ClientCAFile: pki.caFile}, want: "mTLS needs server TLS"},
		{name: "missing key file", srv: New(Settings{}), opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.missingFile}, want: "load tls key pair"},
		{name: "missing client CA file", srv: New(Settings{}),
			opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.missingFile}, want: "read client CA file"},
		{name: "client CA file without PEM", srv: New(Settings{}),
			opts: GRPCOptions{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.notPEMFile}, want: "no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs, err := NewGRPCServer(tc.srv, tc.opts)
			if err == nil {
				gs.Stop()
				t.Fatalf("NewGRPCServer succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewGRPCServer error %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("graceful when no stream is open", func(t *testing.T) {
		t.Parallel()
		gs, err := NewGRPCServer(New(Settings{Processor: newFake()}), GRPCOptions{})
		if err != nil {
			t.Fatalf("NewGRPCServer: %v", err)
		}
		lis := bufconn.Listen(1 << 16)
		served := make(chan error, 1)
		go func() { served <- gs.Serve(lis) }()
		client := extprocv3.NewExternalProcessorClient(dialBuf(t, lis))
		if _, err := protomsg.Exchange(testContext(t), client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
			t.Fatalf("exchange: %v", err)
		}
		gs.Shutdown(context.Background())
		if err := <-served; err != nil {
			t.Errorf("Serve after graceful stop: %v", err)
		}
	})
	t.Run("forced when the deadline passes with a stream open; the stream is still recorded", func(t *testing.T) {
		t.Parallel()
		fake := newFake()
		srv := New(Settings{Processor: fake, Now: fixedNow})
		gs, err := NewGRPCServer(srv, GRPCOptions{})
		if err != nil {
			t.Fatalf("NewGRPCServer: %v", err)
		}
		lis := bufconn.Listen(1 << 16)
		go func() { _ = gs.Serve(lis) }()
		conn := dialBuf(t, lis)
		stream, err := extprocv3.NewExternalProcessorClient(conn).Process(testContext(t))
		if err != nil {
			t.Fatalf("open stream: %v", err)
		}
		if err := stream.Send(protomsg.RequestHeaders(pairs(":authority", "api.example"), false)); err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("receive: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		gs.Shutdown(ctx)
		if ctx.Err() == nil {
			t.Errorf("Shutdown returned before its deadline although a stream was open")
		}
		if x := fake.next(t); !x.Partial || x.Host != "api.example" {
			t.Errorf("open stream recorded with host %q partial %v; want it recorded as partial", x.Host, x.Partial)
		}
	})
}

// rawCodec sends and receives encoded messages as they are, so a test can put on the wire what
// no generated encoder writes.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// rawStream opens an ext_proc stream that sends and receives raw bytes.
func rawStream(t *testing.T, conn *grpc.ClientConn) grpc.ClientStream {
	t.Helper()
	cs, err := conn.NewStream(testContext(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/"+extprocService+"/Process", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	return cs
}

// TestWireDecoding: the server reads Envoy's messages from the wire itself. What the generated
// code would refuse for a string that is not UTF-8 is read as sent; bytes that are not a
// protobuf message end their own stream with Internal, as gRPC's codec would, and nothing else.
func TestWireDecoding(t *testing.T) {
	t.Parallel()
	fake := newFake()
	srv := New(Settings{Processor: fake, Now: fixedNow})
	_, conn := startServer(t, srv, GRPCOptions{})

	headers := lenField(nil, fieldRequestHeaders, append(lenField(nil, 1, headerList(
		header(":authority", "", "api.example"), header(":path", "", "/a"), header("x-b\xffd", "", "v\xfe"))), varintField(nil, 3, 1)...))
	headers = append(headers, lenField(nil, fieldAttributes, entry(attributesKey, structOf(
		entry("source.address", stringValue("198.51.100.9:4000")), entry("request.id", stringValue("id-\xff")))))...)
	cs := rawStream(t, conn)
	if err := cs.SendMsg(&headers); err != nil {
		t.Fatalf("send: %v", err)
	}
	var answer []byte
	if err := cs.RecvMsg(&answer); err != nil {
		t.Fatalf("receive: %v", err)
	}
	var resp extprocv3.ProcessingResponse
	if err := proto.Unmarshal(answer, &resp); err != nil || resp.GetRequestHeaders() == nil {
		t.Fatalf("answer %v (%v); want a request headers answer", &resp, err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	x := fake.next(t)
	if x.Host != "api.example" || x.SourceAddress != "198.51.100.9:4000" || x.RequestID != "id-\xff" {
		t.Errorf("exchange host %q, source %q, id %q; want the attributes and headers as sent", x.Host, x.SourceAddress, x.RequestID)
	}
	if got := x.RequestHeaders[len(x.RequestHeaders)-1]; got.Name != "x-b\xffd" || got.Value != "v\xfe" {
		t.Errorf("last header %q: %q; want it as sent", got.Name, got.Value)
	}

	bad := rawStream(t, conn)
	junk := []byte{0x12, 0x05, 0x0a}
	if err := bad.SendMsg(&junk); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := bad.RecvMsg(&answer); status.Code(err) != codes.Internal {
		t.Fatalf("malformed message: stream ended with %v; want Internal", err)
	}
	if _, err := protomsg.Exchange(testContext(t), extprocv3.NewExternalProcessorClient(conn), protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
		t.Fatalf("a stream after the malformed one: %v", err)
	}
	if s := srv.Stats(); s.Panics != 0 {
		t.Errorf("panics = %d", s.Panics)
	}
}
