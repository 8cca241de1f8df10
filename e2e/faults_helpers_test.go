package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/internal/testutil"
)

// The fault tests run the real binary, built once per test process into binDir.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "apisessions-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// faultsBinary builds cmd/apisessions without the race detector (the in-process tests cover
// races; the binary must start fast), once.
func faultsBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binError = fmt.Errorf("go tool: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "apisessions")
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/apisessions/apisessions/cmd/apisessions").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// faultsProc is the binary running `serve` on loopback ports.
type faultsProc struct {
	cmd                *exec.Cmd
	dir                string
	grpcAddr, httpAddr string
	stdout, stderr     *testutil.Output
	exited             chan struct{}
	exitErr            error
}

// startFaultsProc writes configYAML (with %DIR% replaced by a fresh directory) and starts the
// binary on it, returning once it logged "ready".
func startFaultsProc(t *testing.T, configYAML string) *faultsProc {
	t.Helper()
	if !strings.Contains(configYAML, "sinks:") {
		// Records on stdout for the assertions, beside the default embedded store.
		configYAML += "\nsinks:\n  - type: jsonl\n    path: \"-\"\n  - type: store\n"
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(configYAML, "%DIR%", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return launchFaultsProc(t, dir)
}

// restart starts the binary again on the directory, configuration and data (spool included)
// of p, which must have exited: what a supervisor does after a crash.
func (p *faultsProc) restart(t *testing.T) *faultsProc {
	t.Helper()
	select {
	case <-p.exited:
	default:
		t.Fatal("restart: the server is still running")
	}
	return launchFaultsProc(t, p.dir)
}

// launchFaultsProc starts the binary on dir/apisessions.yaml with its data in dir/data,
// returning once it logged "ready".
func launchFaultsProc(t *testing.T, dir string) *faultsProc {
	t.Helper()
	bin := faultsBinary(t)
	p := &faultsProc{dir: dir, stdout: testutil.NewOutput(), stderr: testutil.NewOutput(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", filepath.Join(dir, "apisessions.yaml"),
		"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", p.stderr.String())
		}
	})
	ready := p.stderr.WaitFor(t, `msg "ready"`, func(m map[string]any) bool { return m["msg"] == "ready" })
	p.grpcAddr, _ = ready["grpc_addr"].(string)
	p.httpAddr, _ = ready["http_addr"].(string)
	return p
}

// kill ends the process with SIGKILL, as the kernel's OOM killer or a node failure does, and
// waits for it to be gone.
func (p *faultsProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// wait waits for the process to exit and returns its exit status.
func (p *faultsProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("the server did not exit within %s", within)
	}
	if p.exitErr != nil {
		if ee, ok := p.exitErr.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("wait: %v", p.exitErr)
	}
	return 0
}

func (p *faultsProc) client(t *testing.T) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// metric scrapes /metrics and returns the value of the sample whose name and labels are
// exactly series (e.g. `apisessions_extproc_panics_total`).
func (p *faultsProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	return p.metrics(t, series)[0]
}

// metrics returns the values of the series from one scrape of the process's /metrics.
func (p *faultsProc) metrics(t *testing.T, series ...string) []float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(series))
	for i, name := range series {
		found := false
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				if out[i], err = strconv.ParseFloat(v, 64); err != nil {
					t.Fatalf("metric %s: %v", name, err)
				}
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("/metrics has no series %s", name)
		}
	}
	return out
}

// rssKiB is the resident set size of a process (VmRSS in /proc/<pid>/status), 0 when unknown.
func rssKiB(pid string) int64 { return statusKiB(pid, "VmRSS:") }

// statusKiB is a field of /proc/<pid>/status in KiB, 0 when unknown.
func statusKiB(pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
