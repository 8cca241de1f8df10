package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateChecksStartFiles: validate refuses what serve would refuse at start — a key
// file others may read, a key too short, a token file that is missing — naming the key and
// the fix, and --no-files checks the configuration alone.
func TestValidateChecksStartFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil || os.Chmod(p, mode) != nil {
			t.Fatalf("write %s", name)
		}
		return p
	}
	good := write("good.key", strings.Repeat("k", 64), 0o600)
	open := write("open.key", strings.Repeat("k", 64), 0o644)
	short := write("short.key", "too-short", 0o600)
	token := write("api.token", "a-token-long-enough-for-the-api-0123456789", 0o600)
	data := filepath.Join(dir, "data")
	tests := []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{name: "files in order", yaml: "hashing:\n  key_file: " + good + "\nserver:\n  data_dir: " + data + "\n  api_token_file: " + token + "\n"},
		{name: "key file others may read", yaml: "hashing:\n  key_file: " + open + "\nserver:\n  data_dir: " + data + "\n", want: open},
		{name: "key too short", yaml: "hashing:\n  key_file: " + short + "\nserver:\n  data_dir: " + data + "\n", want: "use at least 32"},
		{name: "token file missing", yaml: "server:\n  data_dir: " + data + "\n  api_token_file: " + filepath.Join(dir, "absent.token") + "\n", want: "server.api_token_file"},
		{name: "no key yet: serve generates it", yaml: "server:\n  data_dir: " + data + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeConfig(t, tc.yaml)
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr)
			if tc.want == "" {
				if code != exitOK {
					t.Fatalf("validate exited %d; want valid:\n%s", code, stderr.String())
				}
				return
			}
			if code != exitFailure || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "serve would not start") {
				t.Errorf("validate exited %d with:\n%s\nwant %d and a message naming %q", code, stderr.String(), exitFailure, tc.want)
			}
			stdout.Reset()
			stderr.Reset()
			if code := Run(context.Background(), []string{"validate", "--no-files", "--config", path}, &stdout, &stderr); code != exitOK {
				t.Errorf("validate --no-files exited %d; want valid:\n%s", code, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(data, "hash.key")); err == nil {
				t.Error("validate wrote a hash key; it must write nothing")
			}
		})
	}
}
