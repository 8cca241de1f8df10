package app

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/apisessions/apisessions/config"
)

// Where a container's memory limit is, as the process sees its own cgroup: version 2, then 1.
var cgroupLimitFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// goLimitShare is the part of the memory budget given to Go as its soft memory limit. The
// collector then keeps garbage out of the room between it and the memory guard's marks (80 %
// and 90 % of the budget, extproc), which the guard keeps for what is live: without it the
// heap grows to the budget between two collections and the guard would refuse streams for
// garbage. See docs/security.md.
const goLimitShare = 0.7

// memoryLimit decides the memory budget of the process: server.memory_limit_bytes when set;
// else GOMEMLIMIT when set (goLimit returns what the runtime read from it); else 90 % of the
// container's limit; else none (0). source says which.
func memoryLimit(c *config.Server, getenv func(string) string, readFile func(string) ([]byte, error), goLimit func() int64) (limit int64, source string) {
	if c.MemoryLimitBytes > 0 {
		return int64(c.MemoryLimitBytes), "server.memory_limit_bytes"
	}
	if getenv("GOMEMLIMIT") != "" {
		// "off", or a value the runtime did not take, leaves no limit.
		if n := goLimit(); n > 0 && n < math.MaxInt64 {
			return n, "GOMEMLIMIT"
		}
		return 0, ""
	}
	for _, f := range cgroupLimitFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		// "max" (version 2) or a huge number (version 1) means no limit.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, ""
		}
		return n / 10 * 9, f
	}
	return 0, ""
}

// applyMemoryLimit decides the memory budget, sets Go's soft limit to goLimitShare of it,
// says so in the log, and returns the budget for the memory guard (0: none, nothing set).
func applyMemoryLimit(c *config.Server, log *slog.Logger) int64 {
	limit, source := memoryLimit(c, os.Getenv, os.ReadFile, func() int64 { return debug.SetMemoryLimit(-1) })
	if limit <= 0 {
		return 0
	}
	goLimit := int64(float64(limit) * goLimitShare)
	debug.SetMemoryLimit(goLimit)
	log.Info("memory limit", "bytes", limit, "from", source, "go_limit_bytes", goLimit)
	return limit
}
