package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStalledStreamFloodStaysUnderTheMemoryLimit is the flood of docs/security.md against the
// real binary with server.memory_limit_bytes set: 20,000 streams over 20 connections, each
// sending request headers and a 60 KiB body chunk, then nothing, from the load tool in a
// process of its own. The server's resident memory, sampled every 20 ms and by the kernel's
// high-water mark, stays under the limit; the memory guard refused streams and said so.
func TestStalledStreamFloodStaysUnderTheMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 stalled streams through the real binary; make test-slow runs it")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the server's resident memory")
	}
	const limit = 512 << 20
	p := startFaultsProc(t, fmt.Sprintf(`server:
  memory_limit_bytes: %d
parameters:
  - name: product_id
    in: request.body
    path: $.product_id
sinks:
  - type: store
`, limit))
	load := loadBinary(t)
	pid := strconv.Itoa(p.cmd.Process.Pid)

	stop, sampled := make(chan struct{}), make(chan int64)
	go func() {
		var peak int64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, rssKiB(pid)<<10)
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()
	out, err := exec.Command(load, "--target", p.grpcAddr, "--stall", "20000", "--duration", "3s").CombinedOutput()
	close(stop)
	peak := <-sampled
	if err != nil {
		t.Fatalf("load tool: %v\n%s", err, out)
	}
	hwm := statusKiB(pid, "VmHWM:") << 10
	refused := p.metric(t, `apisessions_extproc_streams_refused_total{reason="memory"}`)
	t.Logf("%s; resident memory: sampled peak %d MiB, high-water mark %d MiB, limit %d MiB; streams refused for memory %.0f",
		strings.TrimSpace(string(out)), peak>>20, hwm>>20, limit>>20, refused)
	if peak == 0 || hwm == 0 {
		t.Fatal("the server's resident memory was not read")
	}
	if peak >= limit || hwm >= limit {
		t.Errorf("resident memory peaked at %d bytes (high-water mark %d), want under the limit of %d", peak, hwm, limit)
	}
	if refused == 0 || !strings.Contains(p.stderr.String(), `"msg":"memory guard: new streams refused"`) {
		t.Errorf("the guard refused %.0f streams and logged no refusal; want some, logged:\n%s", refused, p.stderr.String())
	}
}

// loadBinary builds the load tool (e2e/cmd/load) without the race detector, once per call.
func loadBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "load")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/apisessions/apisessions/e2e/cmd/load").CombinedOutput(); err != nil {
		t.Fatalf("go build load: %v\n%s", err, out)
	}
	return bin
}
