package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestFilesArePrivate: the database, its WAL and its shared-memory file are 0600 in a
// directory that others may read, without help from the process umask, and a database an
// older version left 0644 is narrowed when opened.
func TestFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, round := range []string{"new database", "database left 0644"} {
		s, err := Open(Options{Dir: dir, NoRetentionJob: true, Readers: 2})
		if err != nil {
			t.Fatalf("%s: open: %v", round, err)
		}
		write(t, s, req("s_1", "2026-11-22", 0))
		for _, name := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("%s: %v", round, err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s has mode %04o; want 0600", round, name, st.Mode().Perm())
			}
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, FileName), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
