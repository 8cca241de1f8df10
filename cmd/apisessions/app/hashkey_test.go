package app

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/sessions"
)

func TestLoadHashKey(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("k"), 40)
	write := func(t *testing.T, content []byte, mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(p, content, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		file    func(t *testing.T) string
		env     string
		want    []byte
		wantErr string
	}{
		{name: "key file, trailing newline removed", file: func(t *testing.T) string { return write(t, append(bytes.Clone(long), '\n'), 0o600) }, want: long},
		{name: "key file without newline", file: func(t *testing.T) string { return write(t, long, 0o400) }, want: long},
		{name: "key file readable by group", file: func(t *testing.T) string { return write(t, long, 0o640) }, wantErr: "readable by others"},
		{name: "key file readable by others", file: func(t *testing.T) string { return write(t, long, 0o604) }, wantErr: "chmod 600"},
		{name: "key file too short", file: func(t *testing.T) string { return write(t, []byte("short\n"), 0o600) }, wantErr: "holds 5 bytes"},
		{name: "key file missing", file: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, wantErr: "read key file"},
		{name: "key file wins over env", file: func(t *testing.T) string { return write(t, long, 0o600) }, env: strings.Repeat("e", 40), want: long},
		{name: "env", env: strings.Repeat("e", 40) + "\n", want: bytes.Repeat([]byte("e"), 40)},
		{name: "env too short", env: "tiny", wantErr: "APISESSIONS_HASH_KEY holds 4 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var file string
			if tc.file != nil {
				file = tc.file(t)
			}
			env := func(name string) string {
				if name == hashKeyEnv {
					return tc.env
				}
				return ""
			}
			got, _, err := loadHashKey(file, t.TempDir(), env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, sessions.ErrHashKey) {
					t.Fatalf("%s: error = %v, want ErrHashKey mentioning %q", tc.name, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), string(long)) {
					t.Errorf("%s: error %q contains key material", tc.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: unexpected error %v", tc.name, err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("%s: key = %q, want %q", tc.name, got, tc.want)
			}
		})
	}

	t.Run("generated once and reused", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "data", "sub")
		k1, _, err := loadHashKey("", dir, noEnv)
		if err != nil {
			t.Fatalf("first start: %v", err)
		}
		// The hex text of 32 random bytes: no byte of it is a line break that reading it back
		// would trim.
		if raw, err := hex.DecodeString(string(k1)); err != nil || len(raw) != sessions.MinHashKeyBytes {
			t.Errorf("generated key %d bytes long (%v); want the hex text of %d random bytes", len(k1), err, sessions.MinHashKeyBytes)
		}
		di, err := os.Stat(dir)
		if err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("data directory mode = %v (err %v), want 0700", di.Mode().Perm(), err)
		}
		fi, err := os.Stat(filepath.Join(dir, "hash.key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("hash.key mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
		}
		k2, _, err := loadHashKey("", dir, noEnv)
		if err != nil {
			t.Fatalf("second start: %v", err)
		}
		if !bytes.Equal(k1, k2) {
			t.Error("the second start generated a new key instead of reusing hash.key")
		}
	})

	t.Run("generated key file made readable is refused", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if _, _, err := loadHashKey("", dir, noEnv); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "hash.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadHashKey("", dir, noEnv); err == nil || !errors.Is(err, sessions.ErrHashKey) {
			t.Errorf("a world-readable hash.key was accepted (err %v)", err)
		}
	})
}

func TestHashKeySource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("f", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	env := func(n string) string {
		if n == hashKeyEnv {
			return strings.Repeat("e", 40)
		}
		return ""
	}
	steps := []struct {
		name   string
		file   string
		getenv func(string) string
		want   string
	}{
		{name: "first start generates", getenv: noEnv, want: keyFromGenerated},
		{name: "second start reads the data directory", getenv: noEnv, want: keyFromDataDir},
		{name: "environment", getenv: env, want: keyFromEnv},
		{name: "key file", file: keyFile, getenv: env, want: keyFromFile},
	}
	for _, st := range steps {
		_, src, err := loadHashKey(st.file, dir, st.getenv)
		if err != nil || src != st.want {
			t.Errorf("%s: source %q (err %v), want %q", st.name, src, err, st.want)
		}
	}
}
