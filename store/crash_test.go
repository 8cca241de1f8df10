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

const (
	ackLostDriverEnv = "APISESSIONS_STORE_ACKLOST_DRIVER"
	ackLostWhereEnv  = "APISESSIONS_STORE_ACKLOST_WHERE"
	// ackLostExit is the helper's exit status once its batch is committed.
	ackLostExit = 3
)

// ackLostBatch is the batch of TestCrashBetweenCommitAndAck: 120 requests of three parts.
func ackLostBatch() []record.Record {
	var out []record.Record
	for i := range 120 {
		out = append(out, req(fmt.Sprintf("s_ack%d", i%3), "2026-11-22", time.Duration(i)*time.Second, func(r *record.Request) {
			r.Method = []string{"GET", "POST"}[i%2]
		}))
	}
	return out
}

// TestAckLostHelperProcess is not a test: TestCrashBetweenCommitAndAck runs the test binary
// again with it to get a process that commits a batch and dies before Write returns.
func TestAckLostHelperProcess(t *testing.T) {
	where := os.Getenv(ackLostWhereEnv)
	if where == "" {
		t.Skip("helper process for TestCrashBetweenCommitAndAck")
	}
	o := Options{Driver: os.Getenv(ackLostDriverEnv), Dir: where, NoRetentionJob: true}
	if o.Driver == DriverPostgres {
		o.Dir, o.DSN = "", where
	}
	s, err := Open(o)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	s.afterCommit = func() { os.Exit(ackLostExit) }
	err = s.Write(context.Background(), ackLostBatch())
	fmt.Println("write returned:", err)
	os.Exit(2)
}

// TestCrashBetweenCommitAndAck kills a writer between the commit of its batch and the
// acknowledgement, then writes the batch again from a new process, as a replay of the spool
// does (records decoded anew): every request is stored and counted once.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			o := freshOptions(t, d)
			where := o.Dir
			if d == DriverPostgres {
				where = o.DSN
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestAckLostHelperProcess$")
			cmd.Env = append(os.Environ(), ackLostDriverEnv+"="+d, ackLostWhereEnv+"="+where)
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != ackLostExit {
				t.Fatalf("helper ended with %d (%v), want %d after its commit:\n%s", code, err, ackLostExit, out)
			}
			s := openTestWith(t, o)
			batch := ackLostBatch()
			replay := make([]record.Record, len(batch))
			for i, r := range batch {
				replay[i] = redecode(t, r.(*record.Request))
			}
			write(t, s, replay...)
			var rows, stored int64
			if err := s.rdb.QueryRow(`SELECT count(*) FROM requests`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if err := s.rdb.QueryRow(`SELECT sum(rows) FROM parts`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if stored != int64(len(batch)) || rows != int64(len(batch)) {
				t.Errorf("after the replay: %d request rows, parts count %d; want %d each", stored, rows, len(batch))
			}
			v, err := s.Part(context.Background(), "s_ack1", "2026-11-22", PartQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if v.Session.Requests != 40 || v.Session.Methods["GET"] != 20 || v.Session.Methods["POST"] != 20 {
				t.Errorf("part s_ack1: %d requests, methods %v; want 40, 20 GET and 20 POST", v.Session.Requests, v.Session.Methods)
			}
		})
	}
}
