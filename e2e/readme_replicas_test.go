package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/apisessions/apisessions/internal/testutil"
)

// TestReadmeTwoReplicas runs the README's two replicas: examples/replicas.yaml with the
// README's trial key, on this machine's PostgreSQL and Redis (a database and key prefix of the
// test's own, through the variables the file reads), the demo replayed into the second, and
// both UIs' API showing the same sessions.
func TestReadmeTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers on PostgreSQL and Redis; make test-slow runs it")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile(`(?m)^APISESSIONS_HASH_KEY=(\S+) go run ./cmd/apisessions serve --config examples/replicas.yaml --data-dir data/replica-(\d) .*$`)
	found := cmd.FindAllStringSubmatch(string(readme), -1)
	if len(found) != 2 || found[0][1] != found[1][1] || found[0][2] == found[1][2] {
		t.Fatalf("the README's two replica commands are not two serve commands with one key and two data directories: %q", found)
	}
	file, err := os.ReadFile("../examples/replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addr, prefix := testutil.RedisPrefix(t)
	t.Setenv("APISESSIONS_HASH_KEY", found[0][1])
	t.Setenv("APISESSIONS_PG_DSN", testutil.PostgresDB(t))
	t.Setenv("APISESSIONS_REDIS_ADDRESS", addr)
	t.Setenv("APISESSIONS_REDIS_PREFIX", prefix)
	one, two := startFaultsProc(t, string(file)), startFaultsProc(t, string(file))

	out, err := exec.Command(faultsBinary(t), "replay", "--now", "--to", two.grpcAddr,
		filepath.Join("..", "examples", "demo.har")).CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	var har struct {
		Log struct {
			Entries []json.RawMessage `json:"entries"`
		} `json:"log"`
	}
	data, err := os.ReadFile(filepath.Join("..", "examples", "demo.har"))
	if err == nil {
		err = json.Unmarshal(data, &har)
	}
	if err != nil || len(har.Log.Entries) == 0 {
		t.Fatalf("examples/demo.har: %d entries, %v", len(har.Log.Entries), err)
	}
	total := len(har.Log.Entries)
	oracleStored(t, two.httpAddr, total)
	a, b := oracleStore(t, one.httpAddr), oracleStore(t, two.httpAddr)
	if len(a) == 0 {
		t.Fatal("no sessions stored")
	}
	oracleCompare(t, a, b)
}
