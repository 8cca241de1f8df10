package store

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
)

func TestConfigProblems(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "store sinks",
			yaml: "sinks:\n  - type: store\n    path: \"-\"\n  - type: store\n    name: second\n",
			want: []string{
				f + `:3: sinks[0].path: "-" is not a directory; give the store's directory, or leave path out to use server.data_dir`,
				f + `:4: sinks[1].type: sinks[0] is already a store; keep one store sink: the explore API and UI read one store`,
			},
		},
		{
			name: "driver keys",
			yaml: "sinks:\n  - type: store\n    driver: mysql\n",
			want: []string{f + `:3: sinks[0].driver: "mysql" is not a store driver; use sqlite (a file in path) or postgres (a server at dsn)`},
		},
		{
			name: "postgres without dsn, with path",
			yaml: "sinks:\n  - type: store\n    driver: postgres\n    path: /data\n",
			want: []string{
				f + `:2: sinks[0].dsn: is empty; driver postgres needs dsn: postgres://user:${PGPASSWORD}@host:5432/db?sslmode=verify-full`,
				f + `:4: sinks[0].path: is only for driver sqlite; remove path, the database is the one dsn names`,
			},
		},
		{
			name: "dsn without postgres, and a dsn that is no URL, never shown",
			yaml: "sinks:\n  - type: store\n    dsn: postgres://u:secret@h/db\n  - type: store\n    name: b\n    driver: postgres\n    dsn: \"host=h password=secret\"\n",
			want: []string{
				f + `:3: sinks[0].dsn: is only for driver postgres; remove dsn, or set driver: postgres`,
				f + `:4: sinks[1].type: sinks[0] is already a store; keep one store sink: the explore API and UI read one store`,
				f + `:7: sinks[1].dsn: does not begin with postgres://; give a URL such as postgres://user:${PGPASSWORD}@host:5432/db?sslmode=verify-full`,
			},
		},
		{
			name: "postgres",
			yaml: "sinks:\n  - type: store\n    driver: postgres\n    dsn: postgres://u:p@db:5432/x?sslmode=require\n",
		},
		{
			name: "store sink without a path uses the data directory",
			yaml: "sinks:\n  - type: store\n",
		},
		{
			name: "no sinks key: the default store sink",
			yaml: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := testutil.ConfigProblems(t, tc.yaml, Factory.ConfigType())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
		})
	}
}

// A configuration built in code gets the same checks, located by key path alone.
func TestConfigBuiltInCode(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Sinks = append(c.Sinks, config.DefaultSink(Type))
	for i := range c.Sinks {
		c.Sinks[i].Options = DefaultConfig()
	}
	c.Normalize()
	var errs *config.Errors
	if err := c.Validate(); !errors.As(err, &errs) {
		t.Fatalf("Validate = %v, want an *config.Errors", err)
	}
	want := []string{"sinks[1].type: sinks[0] is already a store; keep one store sink: the explore API and UI read one store"}
	if diff := cmp.Diff(want, errs.Lines()); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// The sink of a file without a sinks key is the store.
func TestDefaultSinkIsTheStore(t *testing.T) {
	t.Parallel()
	if config.DefaultSinkType != Type {
		t.Errorf("config.DefaultSinkType = %q, want the store's type %q", config.DefaultSinkType, Type)
	}
}
