package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/internal/testutil"
)

// syncBuffer collects what the server writes while the test reads it.
type syncBuffer = testutil.Output

func newSyncBuffer() *syncBuffer { return testutil.NewOutput() }

// server is apisessions started in-process with Run, on loopback ports.
type server struct {
	grpcAddr, httpAddr string
	configPath         string
	stdout, stderr     *syncBuffer
	cancel             context.CancelFunc
	done               chan int
}

func startServer(t *testing.T, configYAML string) *server {
	t.Helper()
	if !strings.Contains(configYAML, "\nsinks:") {
		// Records on stdout for the assertions, and the embedded store (the default sink) so
		// every scenario also runs through it.
		configYAML += "\nsinks:\n  - type: jsonl\n    path: \"-\"\n  - type: store\n"
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1), configPath: cfgPath}
	args := []string{"serve", "--config", cfgPath, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	finished := make(chan struct{})
	go func() {
		s.done <- app.Run(ctx, args, s.stdout, s.stderr)
		close(finished)
	}()
	ready := s.stderr.WaitFor(t, `msg "ready"`, func(m map[string]any) bool { return m["msg"] == "ready" })
	s.grpcAddr, _ = ready["grpc_addr"].(string)
	s.httpAddr, _ = ready["http_addr"].(string)
	t.Cleanup(func() {
		cancel()
		// Wait for the server to stop writing its data directory before t.TempDir removes it.
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("the server did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// stop shuts the server down as SIGTERM would and returns its exit status.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop within 30s")
		return -1
	}
}

func (s *server) client(t *testing.T) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}
