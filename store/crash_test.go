package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

const (
	helperDirEnv = "APISESSIONS_STORE_CRASH_DIR"
	crashBatch   = 50
)

// TestHelperProcess is not a test: TestKillDurability runs the test binary again with it to get
// a process that writes until it is killed, printing one line per acknowledged batch.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKillDurability")
	}
	s, err := Open(Options{Dir: dir, NoRetentionJob: true})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	for b := 0; ; b++ {
		batch := make([]record.Record, 0, crashBatch)
		for i := range crashBatch {
			batch = append(batch, req(fmt.Sprintf("s_%d", b%50), "2026-11-22", time.Duration(b*crashBatch+i)*time.Millisecond))
		}
		if err := s.Write(context.Background(), batch); err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", b+1)
	}
}

func TestKillDurability(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		n, ok := strings.CutPrefix(line, "acked ")
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper said %q", line)
		}
		acked, _ = strconv.Atoi(n)
		if acked >= 10 {
			// Kill while it writes the next batch: what it acknowledged must survive.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	cmd.Wait()
	s, err := Open(Options{Dir: dir, NoRetentionJob: true})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close(context.Background())
	var n int
	if err := s.rdb.QueryRow("SELECT count(*) FROM requests").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < acked*crashBatch {
		t.Errorf("after kill -9: %d requests stored; want at least the %d acknowledged", n, acked*crashBatch)
	}
	if n%crashBatch != 0 {
		t.Errorf("after kill -9: %d requests stored, not a whole number of batches: a transaction was torn", n)
	}
	var parts int64
	if err := s.rdb.QueryRow("SELECT sum(rows) FROM parts").Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if int(parts) != n {
		t.Errorf("after kill -9: parts count %d requests, the table holds %d; they must agree", parts, n)
	}
	var check string
	if err := s.rdb.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity check after kill -9: %q, %v", check, err)
	}
}
