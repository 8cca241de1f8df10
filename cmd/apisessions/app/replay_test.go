package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

const demoHAR = "../../../examples/demo.har"

// demoRequests is how many exchanges examples/demo.har holds.
const demoRequests = 38

func TestReplayFlags(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrIn string
	}{
		{"table", []string{"--data-dir", dataDir, demoHAR}, exitOK, "SESSION", "38 requests"},
		{"jsonl", []string{"--data-dir", dataDir, "--output", "jsonl", demoHAR}, exitOK, `"kind":"session"`, ""},
		{"now", []string{"--data-dir", dataDir, "--now", demoHAR}, exitOK, "SESSION", "38 requests"},
		{"file order", []string{"--data-dir", dataDir, "--order", "file", demoHAR}, exitOK, "SESSION", "38 requests"},
		{"bad order", []string{"--order", "random", demoHAR}, exitUsage, "", `--order: order "random" is not time or file`},
		{"no file", nil, exitUsage, "", "give exactly one file, e.g. apisessions replay examples/demo.har"},
		{"bad output", []string{"--output", "xml", demoHAR}, exitUsage, "", `--output "xml" is not table or jsonl`},
		{"bad client ip", []string{"--client-ip", "nope", demoHAR}, exitUsage, "", `--client-ip "nope" is not an IP address`},
		{"sinks and to", []string{"--sinks", "--to", "127.0.0.1:1", demoHAR}, exitUsage, "", "drop one"},
		{"api without to", []string{"--api", "http://127.0.0.1:1", demoHAR}, exitUsage, "", "give --to too"},
		{"api not a URL", []string{"--to", "127.0.0.1:1", "--api", "127.0.0.1:8080", demoHAR}, exitUsage, "", "is not an http:// or https:// URL"},
		{"missing file", []string{"--data-dir", dataDir, "nope.har"}, exitFailure, "", "apisessions replay: open nope.har"},
		{"missing config", []string{"--config", "nope.yaml", demoHAR}, exitFailure, "", "configuration not loaded"},
		{"help", []string{"--help"}, exitOK, "", "usage: apisessions replay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := Run(context.Background(), append([]string{"replay"}, tc.args...), &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d; want %d (stderr %q)", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderrIn) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderrIn)
			}
		})
	}
}

// TestReplaySinks replays into the configured sinks: every exchange becomes a request record.
func TestReplaySinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	records := filepath.Join(dir, "records.jsonl")
	cfg := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfg, []byte("sinks:\n  - type: jsonl\n    path: "+records+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"replay", "--config", cfg, "--data-dir", dir, "--sinks", demoHAR}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	data, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), `"kind":"request"`); n != demoRequests {
		t.Errorf("%d request records in the sink; want %d", n, demoRequests)
	}
}

// TestReplayTo sends the demo traffic to a running server, which names the parts in its answers.
func TestReplayTo(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "apisessions.yaml")
	if err := os.WriteFile(cfg, []byte("inline:\n  dynamic_metadata: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startServe(t, "--config", cfg)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"replay", "--to", r.grpcAddr, demoHAR}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "38 requests") || strings.Count(out.String(), "\ns_") == 0 {
		t.Errorf("replay --to printed no part:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if code := r.stop(t); code != exitOK {
		t.Errorf("serve ended with %d", code)
	}
}

// TestReplayToStored sends the demo traffic to a running server and reads back what its store
// recorded: the same parts, keys, users, flows, statuses and counts as an in-process replay
// with the same configuration and hash key finds.
func TestReplayToStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	example, err := os.ReadFile("../../../examples/apisessions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfg, append(example, "inline:\n  dynamic_metadata: true\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startServe(t, "--config", cfg, "--data-dir", dir)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"replay", "--config", cfg, "--to", r.grpcAddr, "--api", "http://" + r.httpAddr, "--output", "jsonl", demoHAR}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	var local bytes.Buffer
	errb.Reset()
	if code := Run(context.Background(), []string{"replay", "--config", cfg, "--data-dir", dir, "--output", "jsonl", demoHAR}, &local, &errb); code != exitOK {
		t.Fatalf("in process: exit %d; stderr:\n%s", code, errb.String())
	}
	got, want := partSummaries(t, out.Bytes()), partSummaries(t, local.Bytes())
	if !slices.Equal(got, want) {
		t.Errorf("replay --to --api reported\n%s\nwant what the engine finds in process:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "user=alice") && strings.Contains(s, "billing:1") }) {
		t.Errorf("no part names alice with a billing flow:\n%s", strings.Join(got, "\n"))
	}

	// The stored durations are the recorded ones, not how long the replayed streams took.
	if got, want := storedDurations(t, r.httpAddr, out.Bytes()), recordedDurations(t, demoHAR); !slices.Equal(got, want) {
		t.Errorf("stored durations (ms) %v; want the recording's %v", got, want)
	}

	// Without --api the table says what it does not know.
	out.Reset()
	errb.Reset()
	if code := Run(context.Background(), []string{"replay", "--config", cfg, "--to", r.grpcAddr, demoHAR}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "add --api") || !strings.Contains(out.String(), "  ?  ") {
		t.Errorf("without --api:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}

// storedDurations reads, through the explore API at addr, the durations of the requests of
// every part that the JSON lines of session records name, sorted.
func storedDurations(t *testing.T, addr string, sessions []byte) []float64 {
	t.Helper()
	var out []float64
	for line := range strings.SplitSeq(strings.TrimSpace(string(sessions)), "\n") {
		var s record.Session
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		resp, err := http.Get("http://" + addr + "/api/v1/sessions/" + url.PathEscape(s.Session) + "/" + url.PathEscape(s.Part) + "?limit=1000")
		if err != nil {
			t.Fatal(err)
		}
		var detail struct {
			Requests []record.Request `json:"requests"`
		}
		err = json.NewDecoder(resp.Body).Decode(&detail)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("part %s/%s: status %d, %v", s.Session, s.Part, resp.StatusCode, err)
		}
		for _, r := range detail.Requests {
			out = append(out, r.DurationMS)
		}
	}
	slices.Sort(out)
	return out
}

// recordedDurations is the duration of every exchange of the HAR file at path in milliseconds,
// sorted.
func recordedDurations(t *testing.T, path string) []float64 {
	t.Helper()
	xs, _, err := recorded.ReadFile(path, recorded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, x := range xs {
		out = append(out, float64(x.End.Sub(x.Start))/float64(time.Millisecond))
	}
	slices.Sort(out)
	return out
}

// partSummaries reads JSON lines of session records into sorted one-line summaries.
func partSummaries(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var s record.Session
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		out = append(out, fmt.Sprintf("%s/%s key=%s user=%s role=%s requests=%d statuses=%v flows=%v malicious=%d",
			s.Session, s.Part, s.Key, s.User, s.Role, s.Requests, s.Statuses, s.Flows, s.Malicious))
	}
	slices.Sort(out)
	return out
}
