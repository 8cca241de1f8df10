package app

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/internal/testutil"
)

type running struct {
	grpcAddr, httpAddr string
	stdout, stderr     *testutil.Output
	cancel             context.CancelFunc
	done               chan int
	exited             chan struct{} // closed once Run returned
}

// stop cancels the server and returns its exit status.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not return within 30s after cancel; log:\n%s", r.stderr.String())
		return -1
	}
}

func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: testutil.NewOutput(), stderr: testutil.NewOutput(), cancel: cancel, done: make(chan int, 1), exited: make(chan struct{})}
	all := append([]string{"serve", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...)
	go func() {
		r.done <- Run(ctx, all, r.stdout, r.stderr)
		close(r.exited)
	}()
	ready := r.stderr.WaitMsg(t, "ready")
	r.grpcAddr, _ = ready["grpc_addr"].(string)
	r.httpAddr, _ = ready["http_addr"].(string)
	t.Cleanup(func() {
		cancel()
		// The data directory is removed after this: let the shutdown finish writing first.
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			t.Error("serve did not return within 30s after cancel")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", r.stderr.String())
		}
	})
	return r
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.yaml")
	if err := os.WriteFile(valid, []byte("sessions:\n  fallback: [ip]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	protected := filepath.Join(dir, "protected.yaml")
	if err := os.WriteFile(protected, []byte("protection:\n  rules:\n    - {name: b, action: block, match: {methods: [DELETE]}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("sesions:\n  fallback: [ip]\nmax_parameters: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{name: "no command", args: nil, wantCode: 2, wantStderr: []string{"Usage: apisessions <command>"}},
		{name: "unknown command", args: []string{"serv"}, wantCode: 2, wantStderr: []string{`unknown command "serv"`}},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "validate"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "apisessions "},
		{name: "validate valid file", args: []string{"validate", "--config", valid}, wantCode: 0, wantStdout: "valid.yaml: valid"},
		{name: "validate invalid file reports every error with file and line", args: []string{"validate", "--config", invalid}, wantCode: 1,
			wantStderr: []string{"invalid.yaml:1:", `unknown key "sesions"`, `"sessions"`, "invalid.yaml:3:", "max_parameters"}},
		{name: "validate says protection needs inline mode", args: []string{"validate", "--config", protected}, wantCode: 0, wantStdout: "note: protection rules block, rate-limit and tag only when Envoy runs apisessions in inline mode"},
		{name: "envoy-config in observability mode says protection needs inline mode", args: []string{"envoy-config", "--config", protected}, wantCode: 0, wantStderr: []string{"in observability mode every verdict is recorded as a dry run"}},
		{name: "validate missing file is unreadable", args: []string{"validate", "--config", filepath.Join(dir, "nope.yaml")}, wantCode: 2},
		{name: "validate without --config", args: []string{"validate"}, wantCode: 2, wantStderr: []string{"--config FILE is required"}},
		{name: "serve with invalid config", args: []string{"serve", "--config", invalid}, wantCode: 1, wantStderr: []string{"unknown key"}},
		{name: "serve with a bad log level", args: []string{"serve", "--log-level", "loud"}, wantCode: 2, wantStderr: []string{"log level"}},
		{name: "serve --help", args: []string{"serve", "--help"}, wantCode: 0, wantStderr: []string{"--config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("%s: exit status %d, want %d\nstdout: %s\nstderr: %s", tc.name, code, tc.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("%s: stdout %q does not contain %q", tc.name, stdout.String(), tc.wantStdout)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("%s: stderr does not contain %q:\n%s", tc.name, w, stderr.String())
				}
			}
		})
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("APISESSIONS_CONFIG", filepath.Join(t.TempDir(), "missing.yaml"))
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"validate"}, &stdout, &stderr); code != 2 {
		t.Fatalf("validate with APISESSIONS_CONFIG naming a missing file: exit %d, want 2 (unreadable); stderr: %s", code, stderr.String())
	}
}

func TestServeHealthAndShutdown(t *testing.T) {
	t.Parallel()
	r := startServe(t)

	resp, err := http.Get("http://" + r.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz answered %d, want 200", resp.StatusCode)
	}
	resp, err = http.Get("http://" + r.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz answered %d, want 200", resp.StatusCode)
	}

	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health status %v, want SERVING", hr.GetStatus())
	}

	if code := r.stop(t); code != 0 {
		t.Errorf("serve returned %d after cancel, want 0", code)
	}
	r.stderr.WaitMsg(t, "shutdown complete")
}

// TestReloadKeepsConfigOnError sends SIGHUP to this process, so it does not run in parallel.
func TestReloadKeepsConfigOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apisessions.yaml")
	if err := os.WriteFile(path, []byte("sessions:\n  fallback: [ip]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startServe(t, "--config", path)

	if err := os.WriteFile(path, []byte("sessions:\n  fallback: [ip, nose]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rejected := r.stderr.WaitMsg(t, "reload rejected, keeping the running configuration")
	if e, _ := rejected["error"].(string); !strings.Contains(e, "apisessions.yaml:2") {
		t.Errorf("the rejected reload's error does not name file and line: %q", e)
	}

	if err := os.WriteFile(path, []byte("sessions:\n  fallback: [ip, user_agent]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.stderr.WaitMsg(t, "configuration reloaded")
	if code := r.stop(t); code != 0 {
		t.Errorf("serve returned %d, want 0", code)
	}
}

func TestEnvoyConfigCommandPrintsAValidBootstrap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	withBody := filepath.Join(dir, "body.yaml")
	cfg := "parameters:\n  - name: login_token\n    in: response.body\n    path: $.token\n    group: true\n    hashed: true\n"
	if err := os.WriteFile(withBody, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "defaults", args: nil, want: []string{"observability_mode: true"}},
		{name: "inline", args: []string{"--mode", "inline"}, want: []string{"x-apisessions-session"}},
		{name: "response body parameter", args: []string{"--config", withBody}, want: []string{"response_body_mode: STREAMED"}},
		{name: "plaintext with own addresses", args: []string{"--plaintext", "--upstream", "10.0.0.7:9000", "--processor", "apisessions:50051"}, want: []string{"port_value: 9000", "apisessions"}},
		{name: "replicas", args: []string{"--replicas", "--processor", "apisessions-grpc:50051"}, want: []string{"grpc_health_check", "envoy.load_balancing_policies.ring_hash", "x-apisessions-affinity-ip"}},
		{name: "replicas without affinity", args: []string{"--replicas", "--affinity", "none", "--processor", "10.0.0.1:50051,10.0.0.2:50051"}, want: []string{"lb_policy: LEAST_REQUEST", "10.0.0.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := Run(context.Background(), append([]string{"envoy-config"}, tc.args...), &stdout, &stderr); code != 0 {
				t.Fatalf("%s: exit %d; stderr: %s", tc.name, code, stderr.String())
			}
			if err := envoy.Validate(stdout.Bytes()); err != nil {
				t.Fatalf("%s: the printed bootstrap does not validate: %v", tc.name, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("%s: bootstrap lacks %q", tc.name, w)
				}
			}
		})
	}
	for _, bad := range [][]string{{"--mode", "sideways"}, {"--processor", "a:1,b:1"}, {"--replicas", "--affinity", "query:token"}} {
		var stdout, stderr bytes.Buffer
		if code := Run(context.Background(), append([]string{"envoy-config"}, bad...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), bad[len(bad)-1]) {
			t.Errorf("envoy-config %v: exit %d, stderr %q; want 2 and a message naming the value", bad, code, stderr.String())
		}
	}
}

func TestRecommendCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"recommend", "--output", "yaml", "../../../examples/demo.har"}, &stdout, &stderr); code != 0 {
		t.Fatalf("recommend on the demo traffic: exit %d; stderr: %s", code, stderr.String())
	}
	if _, err := config.ParseAndValidate("snippet.yaml", stdout.Bytes()); err != nil {
		t.Errorf("the suggested parameters do not validate: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "in: response.body") {
		t.Errorf("the demo's login token (returned in a response body) is not suggested:\n%s", stdout.String())
	}
}
