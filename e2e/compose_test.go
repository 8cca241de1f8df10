package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/envoy"
)

// composeBootstraps are the stack's Envoy configurations and the envoy-config arguments
// that print them. The replicas' bootstrap is rendered from apisessions.yaml, which has the
// parameters of apisessions-replicas.yaml (TestComposeReplicaConfig checks it).
var composeBootstraps = []struct {
	file string
	args []string
}{
	{"envoy.yaml", []string{"envoy-config", "--config", "apisessions.yaml", "--mode", "inline", "--plaintext",
		"--upstream", "demo:8080", "--processor", "apisessions:50051"}},
	{"envoy-replicas.yaml", []string{"envoy-config", "--config", "apisessions.yaml", "--mode", "inline", "--plaintext",
		"--upstream", "demo:8080", "--processor", "apisessions-1:50051,apisessions-2:50051", "--replicas"}},
}

// TestComposeEnvoyConfig: the stack's Envoy configurations are exactly what the generator
// prints for the stack's apisessions configuration, and they validate.
func TestComposeEnvoyConfig(t *testing.T) {
	t.Parallel()
	for _, b := range composeBootstraps {
		shipped, err := os.ReadFile(b.file)
		if err != nil {
			t.Fatal(err)
		}
		var out, errs bytes.Buffer
		if code := app.Run(context.Background(), b.args, &out, &errs); code != 0 {
			t.Fatalf("envoy-config exited %d: %s", code, errs.String())
		}
		// The shipped file starts with comment lines saying how to regenerate it.
		var body []string
		for _, l := range strings.SplitAfter(string(shipped), "\n") {
			if len(body) == 0 && strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# Envoy bootstrap") {
				continue
			}
			body = append(body, l)
		}
		if got := strings.Join(body, ""); got != out.String() {
			t.Errorf("e2e/%s is not what `apisessions %s` prints; regenerate it (see its header)", b.file, strings.Join(b.args, " "))
		}
		if err := envoy.Validate(shipped); err != nil {
			t.Errorf("e2e/%s does not validate: %v", b.file, err)
		}
	}
}

// TestDockerCompose runs the docker-compose stack — Envoy, apisessions built from the
// Dockerfile, the demo API — drives a login and a token request through Envoy and finds their
// records in apisessions' output. It needs a Docker engine and skips without one.
func TestDockerCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds images")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: skipping the docker-compose stack (docker compose -f e2e/docker-compose.yaml up)")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine reachable (docker info: %v): skipping the docker-compose stack; %d bytes of output", err, len(out))
	}
	if err := exec.Command("docker", "compose", "version").Run(); err != nil {
		t.Skip("the docker compose plugin is missing: skipping the docker-compose stack")
	}
	compose := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "-f", filepath.Join(".", "docker-compose.yaml")}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := compose(ctx, "up", "-d", "--build"); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := compose(context.Background(), "logs")
			t.Logf("stack logs:\n%s", out)
		}
		if out, err := compose(context.Background(), "down", "-v"); err != nil {
			t.Logf("docker compose down: %v\n%s", err, out)
		}
	})

	// Envoy answers once its listener is up and the demo API is reachable.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for {
		resp, err := http.Get("http://127.0.0.1:10000/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("Envoy did not answer /healthz with 200 within 2 minutes")
		}
	}
	resp, err := http.Post("http://127.0.0.1:10000/login", "application/json", strings.NewReader(`{"username":"alice","password":"demo"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if err != nil || login.Token == "" {
		t.Fatalf("login through Envoy: status %d, %v", resp.StatusCode, err)
	}
	resp, err = http.Get("http://127.0.0.1:10000/api/items?token=" + login.Token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	for {
		out, _ := compose(ctx, "logs", "--no-log-prefix", "apisessions")
		if strings.Contains(out, `"name":"login_token"`) && strings.Contains(out, `"name":"query_token"`) {
			if strings.Contains(out, login.Token) {
				t.Error("the hashed login token appears in clear in apisessions' output")
			}
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("no records grouped by login_token and query_token in apisessions' output:\n%s", out)
		}
	}
}
