package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the ext_proc gRPC server and the HTTP server", serve},
		{"validate", "check a configuration and print every error with file and line", validate},
		{"replay", "feed recorded traffic (HAR or JSON lines) through the pipeline and print the sessions", replayCmd},
		{"recommend", "suggest grouping keys from recorded traffic, with a ready parameters snippet", recommendCmd},
		{"envoy-config", "print an Envoy bootstrap that attaches apisessions for a configuration", envoyConfig},
		{"version", "print version, commit and Go version", version},
	}
}

// Run runs the apisessions command line (args without the program name) and returns the exit
// status. It returns when ctx is cancelled (serve) or the command is done.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "apisessions: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "apisessions groups the API traffic Envoy sends over ext_proc into user sessions.")
	fmt.Fprintln(w, "\nUsage: apisessions <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'apisessions <command> --help' for its flags. Every flag may also be set")
	fmt.Fprintln(w, "with an environment variable APISESSIONS_<FLAG>, e.g. APISESSIONS_CONFIG.")
}

// newFlagSet returns a flag set that writes its usage to stderr and reports errors instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: apisessions %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nEach flag may also come from APISESSIONS_<FLAG> (upper case, - as _).")
	}
	return fs
}

// newLogger builds the one JSON log handler of the process.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
