package app

import (
	"bytes"
	"log/slog"
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

// memoryLimit decides Go's soft memory limit: server.memory_limit_bytes when set; none of ours
// when GOMEMLIMIT is set (the runtime applied it); else 90 % of the container's limit, so the
// collector works harder before the kernel kills the process; else none (0). source says which.
func memoryLimit(c *config.Server, getenv func(string) string, readFile func(string) ([]byte, error)) (limit int64, source string) {
	if c.MemoryLimitBytes > 0 {
		return int64(c.MemoryLimitBytes), "server.memory_limit_bytes"
	}
	if getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT"
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

// applyMemoryLimit sets the limit memoryLimit decides and says so in the log.
func applyMemoryLimit(c *config.Server, log *slog.Logger) {
	limit, source := memoryLimit(c, os.Getenv, os.ReadFile)
	switch {
	case limit > 0:
		debug.SetMemoryLimit(limit)
		log.Info("memory limit", "bytes", limit, "from", source)
	case source != "":
		log.Info("memory limit", "bytes", debug.SetMemoryLimit(-1), "from", source)
	}
}
