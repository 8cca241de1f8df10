package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun drives the in-process pair briefly in each mode and checks the report's shape; the
// figures themselves depend on the machine.
func TestRun(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"headers only, inline", []string{"--self", "--concurrency", "4", "--duration", "150ms"}},
		{"bodies, observability mode", []string{"--self", "--concurrency", "4", "--duration", "150ms", "--bodies", "--observability"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run(tc.args, &out, &errs); code != 0 {
				t.Fatalf("exit %d: %s", code, errs.String())
			}
			for _, want := range []string{"noop ", "apisessions ", "ratio apisessions/noop at concurrency 4:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "first error") {
				t.Errorf("exchanges failed:\n%s", out.String())
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"neither target nor self", nil},
		{"both", []string{"--self", "--target", "127.0.0.1:1"}},
		{"zero concurrency", []string{"--self", "--concurrency", "0"}},
		{"unbounded duration", []string{"--self", "--duration", "1h"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run(tc.args, &out, &errs); code != 2 {
				t.Errorf("exit %d, want 2 (usage)", code)
			}
		})
	}
}
