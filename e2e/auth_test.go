package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/e2e/internal/harness"
	"github.com/apisessions/apisessions/envoy"
)

// TestGRPCTokenThroughEnvoy: with server.grpc_token_file, the bootstrap envoy-config renders
// carries the token in initial_metadata and traffic is recorded; a proxy without it fails
// open (the API still answers) and apisessions records nothing and counts the refusal.
func TestGRPCTokenThroughEnvoy(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "grpc-token")
	if err := os.WriteFile(tokenFile, []byte("e2e-grpc-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "server:\n  grpc_token_file: "+tokenFile+"\n")
	up := startUpstream(t)
	withToken := startFront(t, srv, up, envoy.ModeInline, nil)
	without := startFront(t, srv, up, envoy.ModeInline, func(o *harness.Options) {
		o.Filters.ExtProc.GetGrpcService().InitialMetadata = nil
	})
	c := client{addr: "198.51.100.9:4000", ua: "token-test/1"}

	recorded := withToken.do(t, c, "GET", "/", "")
	if rec := srv.record(t, recorded.id); rec["session"] == nil {
		t.Errorf("the request through the proxy with the token has no session: %v", rec)
	}
	refused := without.do(t, c, "GET", "/", "")
	if refused.status != http.StatusOK {
		t.Errorf("without the token the API answered %d; want 200 (fail open)", refused.status)
	}
	if e, _ := without.proxy.Entry(refused.id); !strings.HasPrefix(e.Outcome, "failed_open") {
		t.Errorf("without the token the ext_proc outcome is %q; want failed_open", e.Outcome)
	}
	resp, err := http.Get("http://" + srv.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "apisessions_extproc_auth_rejected_total 1\n") {
		t.Error("/metrics does not count the one refused stream")
	}
	if strings.Contains(srv.stdout.String(), refused.id) {
		t.Error("the request without the token was recorded")
	}
}
