package app

import (
	"bytes"
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
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, as PEM files.
type testPKI struct {
	caPool                 *x509.CertPool
	serverCert, serverKey  string
	clientCA               string
	client, strangerClient tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "apisessions test CA", true)
	other, otherKey := newCert(t, nil, nil, "another CA", true)
	srv, srvKey := newCert(t, ca, caKey, "apisessions", false)
	cli, cliKey := newCert(t, ca, caKey, "envoy", false)
	stranger, strangerKey := newCert(t, other, otherKey, "envoy", false)

	p := &testPKI{caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.clientCA = writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	p.serverCert = writePEM(t, dir, "server.pem", "CERTIFICATE", srv.Raw)
	p.serverKey = writePEM(t, dir, "server-key.pem", "PRIVATE KEY", marshalKey(t, srvKey))
	p.client = tls.Certificate{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}
	p.strangerClient = tls.Certificate{Certificate: [][]byte{stranger.Raw}, PrivateKey: strangerKey}
	return p
}

// newCert issues a certificate signed by parent (self-signed when parent is nil).
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.IPAddresses = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func marshalKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// healthOver dials addr with creds and runs one health check.
func healthOver(addr string, creds credentials.TransportCredentials) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ext_proc.v3.ExternalProcessor"})
	return hr.GetStatus(), err
}

// TestGRPCTLSFromConfig starts serve with server.grpc_tls and connects as Envoy would, with and
// without the right certificates.
func TestGRPCTLSFromConfig(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tlsOnly := fmt.Sprintf("server:\n  grpc_tls:\n    cert_file: %s\n    key_file: %s\n", pki.serverCert, pki.serverKey)
	mtls := tlsOnly + fmt.Sprintf("    client_ca_file: %s\n", pki.clientCA)
	clientTLS := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{RootCAs: pki.caPool, Certificates: certs, MinVersion: tls.VersionTLS12})
	}
	servers := map[string]*running{
		"tls":  startServe(t, "--config", writeConfig(t, tlsOnly)),
		"mtls": startServe(t, "--config", writeConfig(t, mtls)),
	}
	tests := []struct {
		name   string
		server string
		creds  credentials.TransportCredentials
		ok     bool
	}{
		{name: "TLS: a client that trusts the CA is served", server: "tls", creds: clientTLS(), ok: true},
		{name: "TLS: a plaintext client is refused", server: "tls", creds: insecure.NewCredentials()},
		{name: "TLS: a client that does not trust the server is refused", server: "tls",
			creds: credentials.NewTLS(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})},
		{name: "mTLS: a client certificate from the CA is served", server: "mtls", creds: clientTLS(pki.client), ok: true},
		{name: "mTLS: no client certificate is refused", server: "mtls", creds: clientTLS()},
		{name: "mTLS: a client certificate from another CA is refused", server: "mtls", creds: clientTLS(pki.strangerClient)},
		{name: "mTLS: a plaintext client is refused", server: "mtls", creds: insecure.NewCredentials()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, err := healthOver(servers[tc.server].grpcAddr, tc.creds)
			switch {
			case tc.ok && (err != nil || st != healthpb.HealthCheckResponse_SERVING):
				t.Errorf("%s: health %v, error %v; want SERVING", tc.name, st, err)
			case !tc.ok && err == nil:
				t.Errorf("%s: the health check succeeded (%v), want a refused connection", tc.name, st)
			case !tc.ok && status.Code(err) != codes.Unavailable:
				t.Errorf("%s: error %v, want Unavailable (handshake refused)", tc.name, err)
			}
		})
	}
}

// TestStreamLimitsFromConfig checks server.max_message_bytes and server.max_concurrent_streams.
func TestStreamLimitsFromConfig(t *testing.T) {
	t.Parallel()
	r := startServe(t, "--config", writeConfig(t, "server:\n  max_message_bytes: 65536\n  max_concurrent_streams: 2\n"))
	client := dialPlain(t, r.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	small := func(id string) []*extprocv3.ProcessingRequest {
		return protomsg.Sequence(&traffic.Exchange{RequestID: id, Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/",
			ResponseSeen: true, Status: 200}, protomsg.Options{})
	}

	t.Run("a message over max_message_bytes ends only its own stream", func(t *testing.T) {
		held := openHeld(ctx, t, client, small("held-1"))
		big := protomsg.Sequence(&traffic.Exchange{Method: "POST", Scheme: "https", Host: "api.example.com", Path: "/upload",
			RequestBody: bytes.Repeat([]byte("a"), 100<<10)}, protomsg.Options{Mode: bufferedMode})
		_, err := protomsg.Exchange(ctx, client, big)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("a 100 KiB body message: %v, want ResourceExhausted", err)
		}
		if err := held.finish(); err != nil {
			t.Errorf("the stream open beside it: %v, want it to complete", err)
		}
	})

	t.Run("streams past max_concurrent_streams wait for a slot", func(t *testing.T) {
		a := openHeld(ctx, t, client, small("held-a"))
		b := openHeld(ctx, t, client, small("held-b"))
		// The third stream cannot open while two are open: the deadline passes first.
		wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := protomsg.Exchange(wctx, client, small("third"))
		wcancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("a third concurrent stream: %v, want DeadlineExceeded while two are open", err)
		}
		if err := a.finish(); err != nil {
			t.Fatal(err)
		}
		if _, err := protomsg.Exchange(ctx, client, small("third-again")); err != nil {
			t.Errorf("a stream once a slot is free: %v", err)
		}
		if err := b.finish(); err != nil {
			t.Fatal(err)
		}
	})
}

// held is a stream whose first message was sent and answered; finish plays the rest.
type held struct {
	stream extprocv3.ExternalProcessor_ProcessClient
	rest   []*extprocv3.ProcessingRequest
}

func openHeld(ctx context.Context, t *testing.T, client extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) *held {
	t.Helper()
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(msgs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("answer to the first message: %v", err)
	}
	return &held{stream: stream, rest: msgs[1:]}
}

func (h *held) finish() error {
	for _, m := range h.rest {
		if err := h.stream.Send(m); err != nil {
			return err
		}
		if _, err := h.stream.Recv(); err != nil {
			return err
		}
	}
	if err := h.stream.CloseSend(); err != nil {
		return err
	}
	if _, err := h.stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// TestHashKeyFileErrors checks that serve refuses a bad hashing.key_file with a message that
// names the file and the fix, and never shows the key.
func TestHashKeyFileErrors(t *testing.T) {
	t.Parallel()
	const key = "KEYBYTES-do-not-print-0123456789abcdef"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    []string
	}{
		{name: "readable by others", content: key, mode: 0o644, want: []string{"chmod 600", "0644"}},
		{name: "readable by the group", content: key, mode: 0o640, want: []string{"chmod 600"}},
		{name: "too short", content: "KEYBYTES-short", mode: 0o600, want: []string{"at least 32", "openssl rand"}},
		{name: "missing", mode: 0, want: []string{"no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "hash.key")
			if tc.mode != 0 {
				if err := os.WriteFile(keyFile, []byte(tc.content), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(keyFile, tc.mode); err != nil { // umask may have narrowed it
					t.Fatal(err)
				}
			}
			cfg := writeConfig(t, "hashing:\n  key_file: "+keyFile+"\n")
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), []string{"serve", "--config", cfg, "--grpc-listen", "127.0.0.1:0",
				"--http-listen", "127.0.0.1:0", "--data-dir", dir}, &stdout, &stderr)
			if code != exitFailure {
				t.Fatalf("%s: exit %d, want %d; stderr: %s", tc.name, code, exitFailure, stderr.String())
			}
			out := stderr.String()
			for _, w := range append(tc.want, keyFile) {
				if !strings.Contains(out, w) {
					t.Errorf("%s: the error does not contain %q: %s", tc.name, w, out)
				}
			}
			if strings.Contains(out, "KEYBYTES") {
				t.Errorf("%s: the error shows the key: %s", tc.name, out)
			}
		})
	}
}
