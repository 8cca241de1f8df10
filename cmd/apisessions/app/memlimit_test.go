package app

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
)

// TestMemoryLimit: the configured limit wins, then GOMEMLIMIT as the runtime read it ("off"
// is none), then 90 % of a container's limit (cgroup v2, then v1); no limit anywhere is none,
// and the memory guard is off.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	v2, v1 := cgroupLimitFiles[0], cgroupLimitFiles[1]
	for _, tc := range []struct {
		name       string
		configured int
		gomemlimit string
		files      map[string]string
		want       int64
		wantSource string
	}{
		{"configured", 512 << 20, "1GiB", map[string]string{v2: "1073741824\n"}, 512 << 20, "server.memory_limit_bytes"},
		{"GOMEMLIMIT", 0, "1GiB", map[string]string{v2: "1073741824\n"}, 1 << 30, "GOMEMLIMIT"},
		{"GOMEMLIMIT off", 0, "off", map[string]string{v2: "1073741824\n"}, 0, ""},
		{"cgroup v2", 0, "", map[string]string{v2: "1073741824\n"}, 1073741824 / 10 * 9, v2},
		{"cgroup v2 without a limit", 0, "", map[string]string{v2: "max\n", v1: "1073741824"}, 0, ""},
		{"cgroup v1", 0, "", map[string]string{v1: "2147483648\n"}, 2147483648 / 10 * 9, v1},
		{"cgroup v1 without a limit", 0, "", map[string]string{v1: "9223372036854771712\n"}, 0, ""},
		{"no container", 0, "", nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the runtime read from GOMEMLIMIT; math.MaxInt64 when it sets no limit.
			goLimit := func() int64 {
				if n, ok := map[string]int64{"1GiB": 1 << 30}[tc.gomemlimit]; ok {
					return n
				}
				return math.MaxInt64
			}
			got, source := memoryLimit(&config.Server{MemoryLimitBytes: tc.configured}, env(tc.gomemlimit), files(tc.files), goLimit)
			if got != tc.want || source != tc.wantSource {
				t.Errorf("limit %d from %q, want %d from %q", got, source, tc.want, tc.wantSource)
			}
		})
	}
	if _, err := files(nil)("x"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestApplyMemoryLimit: a limit sets Go's soft limit to 70 % of it, says both in the log and
// is returned for the memory guard (where none is found, TestMemoryLimit: 0, no guard).
func TestApplyMemoryLimit(t *testing.T) {
	// Not parallel: it changes the process's soft memory limit, and puts it back.
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	got := applyMemoryLimit(&config.Server{MemoryLimitBytes: 512 << 20}, log)
	if want := int64(512 << 20); got != want {
		t.Errorf("limit %d, want %d", got, want)
	}
	limit := float64(512 << 20)
	if soft, want := debug.SetMemoryLimit(-1), int64(limit*0.7); soft != want {
		t.Errorf("Go's soft limit %d, want 70 %% of the limit, %d", soft, want)
	}
	if want := `"msg":"memory limit","bytes":536870912,"from":"server.memory_limit_bytes","go_limit_bytes":375809638`; !strings.Contains(logs.String(), want) {
		t.Errorf("log %q lacks %s", logs.String(), want)
	}
}
