package kubernetes

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/internal/testutil/appconfig"
	"github.com/apisessions/apisessions/sessions"
)

// checkPlaceholdersRefused: apisessions must refuse to start on the example Secret's values.
func checkPlaceholdersRefused(t *testing.T, secret object) {
	t.Helper()
	dir := t.TempDir()
	for _, key := range []string{"grpc-token", "api-token"} {
		path := filepath.Join(dir, key)
		if err := os.WriteFile(path, []byte(secret.StringData[key]), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := secretfile.ReadToken(key, path); err == nil {
			t.Errorf("the placeholder of %s is a token apisessions accepts; make it one it refuses", key)
		}
	}
	if len(secret.StringData["hash-key"]) >= sessions.MinHashKeyBytes {
		t.Errorf("the placeholder of hash-key is long enough to be used as a key; keep it under %d bytes", sessions.MinHashKeyBytes)
	}
}

// envRefs finds the ${VAR} references of a configuration.
var envRefs = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// TestConfigValidates: the ConfigMap's configuration passes "apisessions validate" with the
// environment the Deployment gives it, and every ${VAR} it uses is set by the container.
func TestConfigValidates(t *testing.T) {
	m := load(t)
	cfg := configText(t, m)
	proc := m.deployment(t).processor(t)
	env := map[string]bool{}
	for _, e := range proc.Env {
		env[e.Name] = true
	}
	for _, ref := range envRefs.FindAllStringSubmatch(cfg, -1) {
		if !env[ref[1]] {
			t.Errorf("the configuration expands ${%s}, which the container's environment lacks", ref[1])
		}
		t.Setenv(ref[1], "placeholder-"+strings.ToLower(ref[1]))
	}
	t.Setenv("APISESSIONS_PG_DSN", "postgres://apisessions@postgres:5432/apisessions?sslmode=verify-full")
	t.Setenv("APISESSIONS_REDIS_ADDRESS", "redis:6379")
	if code, out := appconfig.Validate(t, cfg); code != 0 {
		t.Errorf("the ConfigMap's configuration does not validate (exit %d):\n%s", code, out)
	}
}

// served is apisessions started in-process on loopback with the ConfigMap's server section.
type served struct {
	byKey map[string]string // config listen key -> loopback address
}

// startLikeThePod runs serve with the pod's server settings, on loopback ports, with a jsonl
// sink instead of the shared store (probes do not depend on where records go).
func startLikeThePod(t *testing.T, cfg string) served {
	t.Helper()
	dir := t.TempDir()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		t.Fatal(err)
	}
	server, _ := doc["server"].(map[string]any)
	files := map[string]string{"grpc_token_file": "grpc-token", "api_token_file": "api-token"}
	for key, name := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("tok-"+name+"-0123456789abcdef"), 0o600); err != nil {
			t.Fatal(err)
		}
		server[key] = path
	}
	server["metrics_listen"] = "127.0.0.1:0"
	server["data_dir"] = filepath.Join(dir, "data")
	keyFile := filepath.Join(dir, "hash-key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", sessions.MinHashKeyBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	doc["hashing"] = map[string]any{"key_file": keyFile}
	doc["sinks"] = []any{map[string]any{"type": "jsonl", "path": "-"}}
	delete(doc, "state")
	text, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := testutil.NewOutput(), testutil.NewOutput()
	done := make(chan int, 1)
	args := []string{"serve", "--config", cfgPath, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}
	go func() { done <- app.Run(ctx, args, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the server did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", stderr.String())
		}
	})
	ready := stderr.WaitMsg(t, "ready")
	s := served{byKey: map[string]string{}}
	for key, attr := range map[string]string{"grpc_listen": "grpc_addr", "http_listen": "http_addr", "metrics_listen": "metrics_addr"} {
		s.byKey[key], _ = ready[attr].(string)
	}
	return s
}

// get fetches path from addr as the kubelet or Prometheus would: Host is the pod address.
func get(t *testing.T, addr, path string, containerPort int) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = fmt.Sprintf("10.42.0.7:%d", containerPort)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestProbesAndScrapesAreServed: every probe and the ServiceMonitor's scrape name a path the
// binary serves, on the listener behind the port they name, without a token; and the gRPC
// health service Envoy's health checks ask for answers SERVING without the gRPC token.
func TestProbesAndScrapesAreServed(t *testing.T) {
	t.Parallel()
	m := load(t)
	cfg := configText(t, m)
	proc := m.deployment(t).processor(t)
	ports := listenPorts(t, cfg)
	s := startLikeThePod(t, cfg)
	addrOf := func(port int) string {
		addr := s.byKey[ports[fmt.Sprint(port)]]
		if addr == "" {
			t.Fatalf("container port %d is no listener of the configuration (%v)", port, ports)
		}
		return addr
	}
	probes := map[string]*probe{"startup": proc.StartupProbe, "liveness": proc.LivenessProbe, "readiness": proc.ReadinessProbe}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		port := proc.containerPort(t, p.HTTPGet.Port)
		if code := get(t, addrOf(port), p.HTTPGet.Path, port); code != http.StatusOK {
			t.Errorf("%s probe GET %s on port %d: status %d, want 200", name, p.HTTPGet.Path, port, code)
		}
	}
	sm := spec[serviceMonitorSpec](t, m.one(t, "ServiceMonitor"))
	for _, o := range m.all("Service") {
		if !subset(sm.Selector.MatchLabels, o.Metadata.Labels) {
			continue
		}
		for _, e := range sm.Endpoints {
			for _, sp := range spec[serviceSpec](t, o).Ports {
				if sp.Name != e.Port {
					continue
				}
				port := proc.containerPort(t, sp.TargetPort)
				if code := get(t, addrOf(port), e.Path, port); code != http.StatusOK {
					t.Errorf("scrape GET %s on port %d: status %d, want 200 without a token", e.Path, port, code)
				}
			}
		}
	}
	checkGRPCHealth(t, addrOf(proc.containerPort(t, "grpc")))
}

func checkGRPCHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ext_proc.v3.ExternalProcessor"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health of the ext_proc service: %v, %v; want SERVING without a token", resp.GetStatus(), err)
	}
}
