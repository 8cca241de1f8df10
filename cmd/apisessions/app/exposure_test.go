package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

const (
	testAPIToken  = "api-Token-0123456789abcdef"
	testGRPCToken = "grpc-Token-0123456789abcdef"
)

// writeToken writes a token file only its owner may read.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServeRefusesExposedListeners: a listener other machines can reach starts only with
// authentication or the explicit opt-out, whether the address comes from the file or a flag.
func TestServeRefusesExposedListeners(t *testing.T) {
	t.Parallel()
	apiToken, grpcToken := writeToken(t, testAPIToken), writeToken(t, testGRPCToken)
	tests := []struct {
		name    string
		config  string
		flags   []string
		refused []string // words of the refusal; nil = it starts
		warned  string   // a warning the start must log
	}{
		{name: "HTTP on every interface by flag, without a token", flags: []string{"--http-listen", "0.0.0.0:0"},
			refused: []string{"server.http_listen", `"0.0.0.0:0"`, "server.api_token_file", "server.allow_unauthenticated_api: true"}},
		{name: "gRPC on every interface in the file, without a token",
			config:  "server:\n  grpc_listen: \":0\"\n",
			refused: []string{"apisessions.yaml", "server.grpc_listen", "server.grpc_token_file", "client_ca_file", "server.allow_unauthenticated_grpc: true"}},
		{name: "both with tokens", flags: []string{"--http-listen", "0.0.0.0:0", "--grpc-listen", "0.0.0.0:0"},
			config: "server:\n  api_token_file: " + apiToken + "\n  grpc_token_file: " + grpcToken + "\n"},
		{name: "both with the explicit opt-outs", flags: []string{"--http-listen", "0.0.0.0:0", "--grpc-listen", "0.0.0.0:0"},
			config: "server:\n  allow_unauthenticated_api: true\n  allow_unauthenticated_grpc: true\n",
			warned: "without mTLS or a token (server.allow_unauthenticated_grpc)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"serve", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
			if tc.config != "" {
				args = append(args, "--config", writeConfig(t, tc.config))
			}
			args = append(args, tc.flags...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout bytes.Buffer
			stderr := testutil.NewOutput()
			done := make(chan int, 1)
			go func() { done <- Run(ctx, args, &stdout, stderr) }()
			if tc.refused != nil {
				code := <-done
				if code != exitFailure {
					t.Fatalf("%s: exit %d, want %d; stderr: %s", tc.name, code, exitFailure, stderr.String())
				}
				for _, w := range tc.refused {
					if !strings.Contains(stderr.String(), w) {
						t.Errorf("%s: the refusal does not contain %q: %s", tc.name, w, stderr.String())
					}
				}
				return
			}
			stderr.WaitMsg(t, "ready")
			if tc.warned != "" && !strings.Contains(stderr.String(), tc.warned) {
				t.Errorf("%s: no warning %q at start: %s", tc.name, tc.warned, stderr.String())
			}
			cancel()
			if code := <-done; code != exitOK {
				t.Errorf("%s: exit %d after cancel, want 0", tc.name, code)
			}
		})
	}
}

// get sends a GET with the given Host header and bearer token ("" = none).
func get(t *testing.T, addr, path, host, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHostCheck: the HTTP listener answers loopback names and server.allowed_hosts only, so
// a page that rebinds its own name to the listener reads nothing; probes answer any Host.
func TestHostCheck(t *testing.T) {
	t.Parallel()
	r := startServe(t, "--config", writeConfig(t, "server:\n  allowed_hosts: [apisessions.example.com, \"*.ops.example.com\", 10.0.0.0/8, \"fd00::7\"]\n"))
	tests := []struct {
		name, path, host string
		want             int
	}{
		{name: "the listener's own address", path: "/api/v1/sessions", want: http.StatusOK},
		{name: "localhost", path: "/api/v1/sessions", host: "localhost:8080", want: http.StatusOK},
		{name: "another loopback address", path: "/api/v1/sessions", host: "127.0.0.2", want: http.StatusOK},
		{name: "IPv6 loopback", path: "/api/v1/sessions", host: "[::1]:8080", want: http.StatusOK},
		{name: "an allowed name", path: "/api/v1/sessions", host: "apisessions.example.com", want: http.StatusOK},
		{name: "an allowed name in capitals with a port", path: "/", host: "APIsessions.example.com:443", want: http.StatusOK},
		{name: "an allowed glob", path: "/api/v1/sessions", host: "ui.ops.example.com", want: http.StatusOK},
		{name: "an address in an allowed prefix", path: "/metrics", host: "10.1.2.3:8080", want: http.StatusOK},
		{name: "an allowed IPv6 address", path: "/metrics", host: "[fd00::7]:8080", want: http.StatusOK},
		{name: "a rebinding page's name", path: "/api/v1/sessions", host: "attacker.example", want: http.StatusMisdirectedRequest},
		{name: "a name that only ends like an allowed one", path: "/api/v1/sessions", host: "evilapisessions.example.com", want: http.StatusMisdirectedRequest},
		{name: "a name under localhost's name", path: "/api/v1/sessions", host: "localhost.attacker.example", want: http.StatusMisdirectedRequest},
		{name: "an address outside the prefixes", path: "/api/v1/sessions", host: "192.168.1.1", want: http.StatusMisdirectedRequest},
		{name: "the UI under a foreign name", path: "/", host: "attacker.example", want: http.StatusMisdirectedRequest},
		{name: "metrics under a foreign name", path: "/metrics", host: "attacker.example", want: http.StatusMisdirectedRequest},
		{name: "a liveness probe by pod IP", path: "/healthz", host: "192.168.1.1:8080", want: http.StatusOK},
		{name: "a readiness probe by pod IP", path: "/readyz", host: "192.168.1.1:8080", want: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body := get(t, r.httpAddr, tc.path, tc.host, "")
			if code != tc.want {
				t.Errorf("%s: GET %s with Host %q answered %d, want %d: %s", tc.name, tc.path, tc.host, code, tc.want, body)
			}
			if code == http.StatusMisdirectedRequest && !strings.Contains(body, "server.allowed_hosts") {
				t.Errorf("%s: the refusal does not name server.allowed_hosts: %s", tc.name, body)
			}
		})
	}
}

// TestMetricsAccess: /metrics needs the API token when one is set; server.metrics_listen moves
// it to a listener of its own that needs neither token nor a known Host.
func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	token := writeToken(t, testAPIToken)
	shared := startServe(t, "--config", writeConfig(t, "server:\n  api_token_file: "+token+"\n"))
	own := startServe(t, "--config", writeConfig(t, "server:\n  api_token_file: "+token+"\n  metrics_listen: 127.0.0.1:0\n"))
	ready := own.stderr.WaitMsg(t, "ready")
	metricsAddr, _ := ready["metrics_addr"].(string)
	if metricsAddr == "" {
		t.Fatalf("the ready line has no metrics_addr: %v", ready)
	}
	tests := []struct {
		name, addr, path, host, token string
		want                          int
	}{
		{name: "shared listener without the token", addr: shared.httpAddr, path: "/metrics", want: http.StatusUnauthorized},
		{name: "shared listener with a wrong token", addr: shared.httpAddr, path: "/metrics", token: "wrong", want: http.StatusUnauthorized},
		{name: "shared listener with the token", addr: shared.httpAddr, path: "/metrics", token: testAPIToken, want: http.StatusOK},
		{name: "the API still needs the token", addr: shared.httpAddr, path: "/api/v1/sessions", want: http.StatusUnauthorized},
		{name: "probes need no token", addr: shared.httpAddr, path: "/readyz", want: http.StatusOK},
		{name: "metrics leave the HTTP listener", addr: own.httpAddr, path: "/metrics", token: testAPIToken, want: http.StatusNotFound},
		{name: "the metrics listener needs no token", addr: metricsAddr, path: "/metrics", want: http.StatusOK},
		{name: "the metrics listener checks no Host", addr: metricsAddr, path: "/metrics", host: "prometheus.example", want: http.StatusOK},
		{name: "the metrics listener serves nothing else", addr: metricsAddr, path: "/api/v1/sessions", token: testAPIToken, want: http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if code, body := get(t, tc.addr, tc.path, tc.host, tc.token); code != tc.want {
				t.Errorf("%s: GET %s answered %d, want %d: %.200s", tc.name, tc.path, code, tc.want, body)
			}
		})
	}
}

// TestGRPCTokenFromConfig: with server.grpc_token_file, ext_proc needs the token, health does
// not, refusals are counted, and reflection stays off unless server.grpc_reflection is set.
func TestGRPCTokenFromConfig(t *testing.T) {
	t.Parallel()
	token := writeToken(t, testGRPCToken)
	r := startServe(t, "--config", writeConfig(t, "server:\n  grpc_token_file: "+token+"\n"))
	client := dialPlain(t, r.grpcAddr)
	x := &traffic.Exchange{RequestID: "tok-1", Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/", ResponseSeen: true, Status: 200}
	msgs := protomsg.Sequence(x, protomsg.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := protomsg.Exchange(ctx, client, msgs); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an exchange without the token: %v, want Unauthenticated", err)
	}
	wrong := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testGRPCToken+"-not")
	if _, err := protomsg.Exchange(wrong, client, msgs); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an exchange with a wrong token: %v, want Unauthenticated", err)
	}
	right := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testGRPCToken)
	if _, err := protomsg.Exchange(right, client, msgs); err != nil {
		t.Errorf("an exchange with the token: %v", err)
	}
	if st, err := healthOver(r.grpcAddr, insecure.NewCredentials()); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without the token: %v, %v; want SERVING", st, err)
	}
	if code, page := get(t, r.httpAddr, "/metrics", "", ""); code != http.StatusOK || !strings.Contains(page, "apisessions_extproc_auth_rejected_total 2\n") {
		t.Errorf("/metrics (%d) does not count the 2 refused calls:\n%s", code, grepLines(page, "auth_rejected"))
	}
	if strings.Contains(r.stderr.String(), testGRPCToken) {
		t.Error("the log shows the gRPC token")
	}
	if err := listServices(right, r.grpcAddr); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection on the defaults: %v, want Unimplemented (off)", err)
	}
	on := startServe(t, "--config", writeConfig(t, "server:\n  grpc_token_file: "+token+"\n  grpc_reflection: true\n"))
	on.stderr.WaitMsg(t, "gRPC reflection is on (server.grpc_reflection): it lists the services to every client")
	if err := listServices(right, on.grpcAddr); err != nil {
		t.Errorf("reflection with server.grpc_reflection and the token: %v", err)
	}
	if err := listServices(ctx, on.grpcAddr); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without the token: %v, want Unauthenticated", err)
	}
}

// listServices asks the server at addr for its services through reflection.
func listServices(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
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

func grepLines(page, word string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDataFilesArePrivate: in a data directory created 0755 beforehand, everything serve
// creates (hash key, database, WAL, shared memory, spool, rejects, jsonl) is 0600 and every
// directory 0700, and the start warns about the directory itself.
func TestDataFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // an earlier serve may have narrowed the umask
		t.Fatal(err)
	}
	cfg := "sinks:\n  - type: store\n  - type: jsonl\n    path: " + filepath.Join(dir, "records", "records.jsonl") + "\n"
	r := startServe(t, "--config", writeConfig(t, cfg), "--data-dir", dir)
	warning := r.stderr.WaitMsg(t, "the data directory is open to other users: they may list it and read what it held before")
	if warning["fix"] != "chmod 700 "+dir || warning["mode"] != "0755" {
		t.Errorf("the warning does not name the mode and the fix: %v", warning)
	}
	client := dialPlain(t, r.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x := &traffic.Exchange{RequestID: "mode-1", Start: time.Now().UTC(), Method: "GET", Scheme: "https", Host: "api.example.com",
		Path: "/", SourceAddress: "198.51.100.4:5000", ResponseSeen: true, Status: 200}
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(x, protomsg.Options{})); err != nil {
		t.Fatal(err)
	}
	// Wait for the store to hold the request: then the database, WAL and shared memory exist.
	for {
		if code, _ := get(t, r.httpAddr, "/api/v1/requests/mode-1", "", ""); code == http.StatusOK {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the request never reached the store")
		case <-time.After(20 * time.Millisecond):
		}
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen[filepath.Base(rel)] = true
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", rel, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hash.key", "apisessions.db", "apisessions.db-wal", "apisessions.db-shm", "spool", "rejected.jsonl", "records.jsonl"} {
		if !seen[name] {
			t.Errorf("the data directory holds no %s; saw %v", name, seen)
		}
	}
}

// TestEnvoyConfigCarriesTheGRPCToken: envoy-config reads server.grpc_token_file with the
// same checks as serve and puts the token in the ext_proc filter's initial_metadata.
func TestEnvoyConfigCarriesTheGRPCToken(t *testing.T) {
	t.Parallel()
	token := writeToken(t, testGRPCToken)
	var stdout, stderr bytes.Buffer
	args := []string{"envoy-config", "--mode", "inline", "--processor", "apisessions:50051",
		"--config", writeConfig(t, "server:\n  grpc_listen: 0.0.0.0:50051\n  grpc_token_file: "+token+"\n")}
	if code := Run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("envoy-config exited %d: %s", code, stderr.String())
	}
	if err := envoy.Validate(stdout.Bytes()); err != nil {
		t.Fatalf("the bootstrap does not validate: %v", err)
	}
	for _, w := range []string{"THIS FILE HOLDS A SECRET", `initial_metadata:`, `{key: authorization, value: "Bearer ` + testGRPCToken + `"}`} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("the bootstrap lacks %q", w)
		}
	}

	if err := os.Chmod(token, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := Run(context.Background(), args, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "chmod 600") {
		t.Errorf("a token file readable by others: exit %d, stderr %q; want %d and the fix", code, stderr.String(), exitFailure)
	}
	if strings.Contains(stdout.String()+stderr.String(), testGRPCToken) {
		t.Error("a refused token file still shows the token")
	}
}

// TestContainerConfig: the image's configuration is valid, opens both listeners to other
// machines only behind tokens, and without the token files refuses to start naming them.
func TestContainerConfig(t *testing.T) {
	t.Parallel()
	const path = "../../../examples/container.yaml"
	cfg, err := config.LoadAndValidate(path)
	if err != nil {
		t.Fatalf("examples/container.yaml: %v", err)
	}
	s := cfg.Server
	if config.LoopbackListen(s.GRPCListen) || config.LoopbackListen(s.HTTPListen) {
		t.Errorf("the container listens on %s and %s; other containers could not reach it", s.GRPCListen, s.HTTPListen)
	}
	if s.APITokenFile == "" || s.GRPCTokenFile == "" || s.AllowUnauthenticatedAPI || s.AllowUnauthenticatedGRPC {
		t.Errorf("the container's listeners are not both behind tokens: %+v", s)
	}
	if _, err := os.Stat(s.APITokenFile); err == nil {
		t.Skipf("%s exists on this machine", s.APITokenFile)
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"serve", "--config", path, "--data-dir", t.TempDir(),
		"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "server.api_token_file "+s.APITokenFile+" does not exist; write a token to it") {
		t.Errorf("serve without the token files: exit %d, stderr %s; want %d naming the missing file", code, stderr.String(), exitFailure)
	}
}

// TestReplayToWithToken: replay --to sends the token of the configuration's
// server.grpc_token_file, and without it the server refuses the traffic.
func TestReplayToWithToken(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "server:\n  grpc_token_file: "+writeToken(t, testGRPCToken)+"\n")
	r := startServe(t, "--config", cfg)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"replay", "--config", cfg, "--to", r.grpcAddr, demoHAR}, &out, &errb); code != exitOK {
		t.Fatalf("replay with the token: exit %d; stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "38 requests") || strings.Count(out.String(), "\ns_") == 0 {
		t.Errorf("replay with the token printed no part:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	code := Run(context.Background(), []string{"replay", "--to", r.grpcAddr, demoHAR}, &out, &errb)
	if code == exitOK || !strings.Contains(errb.String(), "Unauthenticated") {
		t.Errorf("replay without the token: exit %d, stderr %q; want a failure saying Unauthenticated", code, errb.String())
	}
}
