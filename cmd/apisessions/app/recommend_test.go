package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
)

func TestRecommendFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notHAR := filepath.Join(dir, "broken.har")
	if err := os.WriteFile(notHAR, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // a part of stdout
		stderr     string // a part of stderr
		snippetOut bool   // stdout is a snippet alone
	}{
		{name: "text", args: []string{"../../../examples/demo.har"}, code: exitOK, stdout: "2. login_token → header_x_auth_token"},
		{name: "yaml", args: []string{"--output", "yaml", "../../../examples/demo.har"}, code: exitOK, stdout: "- name: login_token", snippetOut: true},
		{name: "max one", args: []string{"--max=1", "--output=yaml", "../../../examples/demo.har"}, code: exitOK, stdout: "name: jwt_sub", snippetOut: true},
		{name: "client ip", args: []string{"--client-ip", "2001:db8::1", "../../../examples/demo.har"}, code: exitOK, stdout: "Analysed 38 requests"},
		{name: "help", args: []string{"--help"}, code: exitOK, stderr: "usage: apisessions recommend"},
		{name: "no file", args: nil, code: exitUsage, stderr: "give exactly one file"},
		{name: "two files", args: []string{"a.har", "b.har"}, code: exitUsage, stderr: "give exactly one file"},
		{name: "bad output", args: []string{"--output", "json", "x.har"}, code: exitUsage, stderr: `--output "json" is not text or yaml`},
		{name: "bad max", args: []string{"--max", "0", "x.har"}, code: exitUsage, stderr: "--max 0 is out of range"},
		{name: "file order", args: []string{"--order", "file", "../../../examples/demo.har"}, code: exitOK, stdout: "Analysed 38 requests"},
		{name: "bad order", args: []string{"--order", "random", "x.har"}, code: exitUsage, stderr: `--order: order "random" is not time or file`},
		{name: "bad client ip", args: []string{"--client-ip", "nope", "x.har"}, code: exitUsage, stderr: "is not an IP address"},
		{name: "unknown flag", args: []string{"--config", "x.yaml", "x.har"}, code: exitUsage, stderr: "flag provided but not defined"},
		{name: "missing file", args: []string{filepath.Join(dir, "absent.har")}, code: exitFailure, stderr: "no such file"},
		{name: "not a HAR", args: []string{notHAR}, code: exitFailure, stderr: "not a HAR file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := recommendCmd(context.Background(), tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.stdout, out.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.stderr, errb.String())
			}
			if tc.snippetOut {
				if _, err := config.ParseAndValidate("snippet.yaml", out.Bytes()); err != nil {
					t.Errorf("the yaml output does not validate: %v\n%s", err, out.String())
				}
			}
		})
	}
}

// TestRecommendFlagsFromEnvironment cannot run in parallel: it sets process environment variables.
func TestRecommendFlagsFromEnvironment(t *testing.T) {
	t.Setenv("APISESSIONS_OUTPUT", "yaml")
	t.Setenv("APISESSIONS_MAX", "1")
	var out, errb bytes.Buffer
	if code := recommendCmd(context.Background(), []string{"../../../examples/demo.har"}, &out, &errb); code != exitOK {
		t.Fatalf("exit status %d; stderr:\n%s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "parameters:") || strings.Contains(out.String(), "me_username") {
		t.Errorf("APISESSIONS_OUTPUT=yaml and APISESSIONS_MAX=1 were not applied:\n%s", out.String())
	}
	// A flag on the command line wins over its variable.
	out.Reset()
	if code := recommendCmd(context.Background(), []string{"--output", "text", "../../../examples/demo.har"}, &out, &errb); code != exitOK {
		t.Fatalf("exit status %d; stderr:\n%s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "Analysed") {
		t.Errorf("--output text did not win over APISESSIONS_OUTPUT:\n%s", out.String())
	}
	t.Setenv("APISESSIONS_MAX", "many")
	if code := recommendCmd(context.Background(), []string{"../../../examples/demo.har"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "APISESSIONS_MAX") {
		t.Errorf("a bad APISESSIONS_MAX gave exit status %d, stderr:\n%s", code, errb.String())
	}
}
