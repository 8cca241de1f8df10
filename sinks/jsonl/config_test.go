package jsonl

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
)

// problems returns the lines "apisessions validate" prints for a file holding text.
func problems(t *testing.T, text string) []string {
	return testutil.ConfigProblems(t, text, Factory.ConfigType())
}

func TestConfigProblems(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "standard output and files are valid", yaml: "sinks:\n  - {type: jsonl, path: \"-\"}\n  - {type: jsonl, path: a.jsonl, max_backups: 0}\n"},
		{
			name: "sink delivery and rotation values",
			yaml: "sinks:\n  - type: jsonl\n    path: a.jsonl\n    queue_size: 0\n    batch_size: 0\n    flush_interval: 0s\n    max_size_mb: 0\n    max_backups: -1\n",
			want: []string{
				f + `:4: sinks[0].queue_size: 0 is too small; use at least 1 (default 10000)`,
				f + `:5: sinks[0].batch_size: 0 is too small; use at least 1 (default 500)`,
				f + `:6: sinks[0].flush_interval: 0s is not more than 0; use a duration such as 1s`,
				f + `:7: sinks[0].max_size_mb: 0 is too small; use at least 1 (default 100)`,
				f + `:8: sinks[0].max_backups: -1 is negative; use 0 (keep none) or more (default 5)`,
			},
		},
		{
			name: "sink names and files",
			yaml: "sinks:\n  - {type: jsonl, path: a.jsonl, name: out}\n  - {type: jsonl, path: a.jsonl, name: out}\n  - {type: jsonl, path: \"-\", name: \"bad name\"}\n  - {type: jsonl}\n",
			want: []string{
				f + `:3: sinks[1].name: "out" is already the name of sinks[0]; give each sink its own name`,
				f + `:3: sinks[1].path: is also the file of sinks[0]; give each sink its own file`,
				f + `:4: sinks[2].name: "bad name" is not a valid sink name; use letters, digits, ., _ and - (at most 64): it labels logs and metrics`,
				f + `:5: sinks[3].path: is missing; write "-" for standard output or a file path`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, problems(t, tc.yaml)); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
		})
	}
}

// Written keys win and the others keep the rotation defaults.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.ParseAndValidate("s.yaml", []byte("sinks:\n  - {type: jsonl, path: a.jsonl}\n  - {type: jsonl, path: b.jsonl, max_backups: 0}\n"), Factory.ConfigType())
	if err != nil {
		t.Fatal(err)
	}
	want := []*Config{
		{Path: "a.jsonl", MaxSizeMB: DefaultMaxSizeMB, MaxBackups: DefaultMaxBackups},
		{Path: "b.jsonl", MaxSizeMB: DefaultMaxSizeMB},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, c.Sinks[i].Options); diff != "" {
			t.Errorf("sinks[%d] options (-want +got):\n%s", i, diff)
		}
	}
}
