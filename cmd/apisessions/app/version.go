package app

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/apisessions/apisessions/internal/cliflags"
)

// Set at link time: go build -ldflags "-X github.com/apisessions/apisessions/cmd/apisessions/app.Version=v1.2.3".
var (
	Version = "dev"
	Commit  = ""
)

func version(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", stderr)
	if code := cliflags.Parse(fs, args, stderr); code >= 0 {
		return code
	}
	fmt.Fprintf(stdout, "apisessions %s\ncommit %s\n%s %s/%s\n", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// commit is the linked-in commit, else the VCS revision Go recorded at build time.
func commit() string {
	if Commit != "" {
		return Commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
