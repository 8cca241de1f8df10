package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for the tool's executable, which --separate starts
// as apisessions.
func TestMain(m *testing.M) {
	if code, ok := child(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestRun drives the in-process pair briefly in each mode and checks the report's shape; the
// figures themselves depend on the machine.
func TestRun(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"headers only, inline", []string{"--self", "--concurrency", "4", "--duration", "150ms"}},
		{"bodies, observability mode", []string{"--self", "--concurrency", "4", "--duration", "150ms", "--bodies", "--observability"}},
		{"20 rules, inline", []string{"--self", "--concurrency", "4", "--duration", "150ms", "--rules"}},
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

// TestSeparate runs each server in a process of its own and checks the report: the ratio, and
// CPU times per exchange that are plausible (the machine's at least the server's).
func TestSeparate(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc on this system: --separate reads the servers' CPU time there")
	}
	var out, errs bytes.Buffer
	args := []string{"--self", "--separate", "--concurrency", "4", "--duration", "400ms", "--rounds", "2"}
	if code := run(args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if !strings.Contains(out.String(), "ratio apisessions/noop at concurrency 4:") || strings.Contains(out.String(), "first error") {
		t.Errorf("report:\n%s", out.String())
	}
	for _, line := range []string{"server", "machine"} {
		m := regexp.MustCompile(line + ` CPU per exchange at concurrency 4: noop ([0-9.]+)µs, apisessions ([0-9.]+)µs`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no %s CPU line:\n%s", line, out.String())
		}
		for _, v := range m[1:] {
			if us, _ := strconv.ParseFloat(v, 64); us <= 0 || us > 1e6 {
				t.Errorf("%s CPU per exchange %sµs is implausible:\n%s", line, v, out.String())
			}
		}
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
		{"server pid without target", []string{"--self", "--server-pid", "1"}},
		{"rules with a configuration", []string{"--self", "--rules", "--config", "x.yaml"}},
		{"separate without self", []string{"--target", "127.0.0.1:1", "--separate"}},
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

// A configuration apisessions refuses stops the run with apisessions' own reason.
func TestRunReportsWhyAPISessionsDidNotStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(cfg, []byte("sessions:\n  idle_timeout: forever\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"--self", "--duration", "100ms", "--config", cfg}, &out, &errs); code == 0 {
		t.Fatalf("exit 0 with a bad configuration:\n%s", out.String())
	}
	if !strings.Contains(errs.String(), "idle_timeout") {
		t.Errorf("the error does not say what apisessions refused:\n%s", errs.String())
	}
}

// TestServerCPU runs --target against a no-op server in this process with --server-pid, and
// checks that the server's CPU time per exchange is reported and plausible.
func TestServerCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system: --server-pid reads it")
	}
	srv, err := startNoop()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	var out, errs bytes.Buffer
	args := []string{"--target", srv.grpcAddr, "--server-pid", strconv.Itoa(os.Getpid()), "--concurrency", "4", "--duration", "300ms"}
	if code := run(args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	m := regexp.MustCompile(`server CPU per exchange at concurrency 4: ([0-9.]+)µs`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no server CPU line:\n%s", out.String())
	}
	// The process is the load generator and the server at once: every exchange costs it
	// some CPU, and far less than a second.
	if us, _ := strconv.ParseFloat(m[1], 64); us <= 0 || us > 1e6 {
		t.Errorf("CPU per exchange %sµs is implausible", m[1])
	}
}

func TestProcessCPURejectsMissingProcess(t *testing.T) {
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
