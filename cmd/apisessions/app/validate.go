package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/cliflags"
)

func validate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("validate", "--config FILE", stderr)
	path := flags.String("config", "", "configuration file to check (required)")
	noFiles := flags.Bool("no-files", false, "check the configuration only, not the files it names (token, key, certificate and password files): for a configuration checked on another machine than the one that runs it")
	if code := cliflags.Parse(flags, args, stderr); code >= 0 {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "apisessions validate: --config FILE is required")
		flags.Usage()
		return exitUsage
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if isUnreadable(err) {
			return exitUsage
		}
		return exitFailure
	}
	if !*noFiles {
		if err := checkStartFiles(cfg); err != nil {
			fmt.Fprintf(stderr, "%s: the configuration is valid, but serve would not start with the files it names:\n%v\n(--no-files checks the configuration alone)\n", *path, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stdout, "%s: valid\n", *path)
	if cfg.Protection.Enabled() {
		fmt.Fprintf(stdout, "%s: note: %s\n", *path, protectionModeNote)
	}
	return exitOK
}

// protectionModeNote says where protection rules act: Envoy answers only what waits for it.
const protectionModeNote = "protection rules block, rate-limit and tag only when Envoy runs apisessions in inline mode (apisessions envoy-config --mode inline); in observability mode every verdict is recorded as a dry run"

// loadConfig loads and validates a configuration, sinks included (sinkTypes); path "" means
// the defaults.
func loadConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.LoadAndValidate(path, sinkTypes()...)
	}
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// isUnreadable tells a file that cannot be read from one that is invalid.
func isUnreadable(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}
