package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
		wantErr       []string
	}{
		{name: "trailing newline removed", content: "tok-123\n", mode: 0o600, want: "tok-123"},
		{name: "crlf removed", content: "tok-123\r\n", mode: 0o400, want: "tok-123"},
		{name: "readable by others", content: "SECRETVALUE", mode: 0o644, wantErr: []string{"readable by others", "0644", "chmod 600"}},
		{name: "readable by the group", content: "SECRETVALUE", mode: 0o640, wantErr: []string{"readable by others", "chmod 600"}},
		{name: "empty", content: "\n", mode: 0o600, wantErr: []string{"empty", "openssl rand"}},
		{name: "spaces around", content: " SECRETVALUE \n", mode: 0o600, wantErr: []string{"spaces"}},
		{name: "two lines", content: "SECRETVALUE\nmore\n", mode: 0o600, wantErr: []string{"line breaks"}},
		{name: "not ASCII", content: "SECRETVALUEé", mode: 0o600, wantErr: []string{"visible ASCII"}},
		{name: "too large", content: strings.Repeat("S", MaxTokenBytes+1), mode: 0o600, wantErr: []string{"at most 4096"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil { // the umask may have narrowed it
				t.Fatal(err)
			}
			got, err := ReadToken("grpc token file", p)
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: no error; want one naming %v", tc.name, tc.wantErr)
			}
			for _, w := range append(tc.wantErr, "grpc token file", p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not contain %q", tc.name, err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("%s: the error shows the token: %v", tc.name, err)
			}
		})
	}
	missing := filepath.Join(dir, "missing")
	if _, err := ReadToken("server.grpc_token_file", missing); err == nil || !strings.Contains(err.Error(), "server.grpc_token_file "+missing+" does not exist; write a token to it") {
		t.Errorf("missing file: %v; want it named with the fix", err)
	}
}

func TestReadNamedTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# operators\nops:0123456789abcdef0123\n\nsoc.team:fedcba9876543210fedc\r\n", 0o600)
	got, err := ReadNamedTokens("write tokens file", good)
	if err != nil || len(got) != 2 || got["ops"] != "0123456789abcdef0123" || got["soc.team"] != "fedcba9876543210fedc" {
		t.Fatalf("got %v, %v", got, err)
	}
	for name, c := range map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"open":      {"ops:0123456789abcdef0123\n", 0o644, "readable by others"},
		"short":     {"ops:short\n", 0o600, "line 1: the token of ops is shorter"},
		"no name":   {":0123456789abcdef0123\n", 0o600, "line 1: write name:token"},
		"bad name":  {"o p:0123456789abcdef0123\n", 0o600, "line 1: write name:token"},
		"twice":     {"a:0123456789abcdef0123\na:0123456789abcdef0124\n", 0o600, "line 2: a is named twice"},
		"same tok":  {"a:0123456789abcdef0123\nb:0123456789abcdef0123\n", 0o600, "line 2: the token of b is also"},
		"empty":     {"# nothing\n", 0o600, "has no name:token line"},
		"space tok": {"a:0123456789 abcdef0123\n", 0o600, "visible ASCII"},
	} {
		_, err := ReadNamedTokens("write tokens file", write(strings.ReplaceAll(name, " ", "_"), c.body, c.mode))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789") {
			t.Errorf("%s: the error shows a token: %v", name, err)
		}
	}
}
