package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
