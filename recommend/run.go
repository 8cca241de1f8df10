package recommend

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/replay"
)

// Exit statuses of Run.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// defaultClientIP is the address given to HAR entries without one, as replay does.
const defaultClientIP = "192.0.2.1"

// Run is "apisessions recommend [flags] FILE.har|FILE.jsonl": it reads the file, prints the
// suggestions to stdout and messages to stderr, and returns the exit status. Every flag may
// also come from APISESSIONS_<FLAG>.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recommend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clientIP := fs.String("client-ip", defaultClientIP, "client IP of HAR entries without a _clientIP field (HAR does not record the client)")
	maxKeys := fs.Int("max", DefaultMax, "most grouping keys suggested, and separately the most context parameters")
	output := fs.String("output", "text", "text (explanations and the snippet) or yaml (the parameters: snippet only)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: apisessions recommend [flags] FILE.har|FILE.jsonl\n\n"+
			"Suggests session grouping keys from recorded traffic, with an explanation for each and a\n"+
			"parameters: snippet for the configuration file. Values are never printed, only counts and\n"+
			"lengths. Flags may also come from APISESSIONS_<FLAG> (upper case, - as _).\n\n")
		fs.PrintDefaults()
	}
	if code := cliflags.Parse(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "apisessions recommend: give exactly one file, e.g. apisessions recommend examples/demo.har")
		return ExitUsage
	}
	if *output != "text" && *output != "yaml" {
		fmt.Fprintf(stderr, "apisessions recommend: --output %q is not text or yaml\n", *output)
		return ExitUsage
	}
	if *maxKeys < 1 || *maxKeys > maxSnippet {
		fmt.Fprintf(stderr, "apisessions recommend: --max %d is out of range; use 1 to %d\n", *maxKeys, maxSnippet)
		return ExitUsage
	}
	if _, err := netip.ParseAddr(*clientIP); err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: --client-ip %q is not an IP address\n", *clientIP)
		return ExitUsage
	}
	xs, format, err := replay.ReadFile(fs.Arg(0), replay.ReadOptions{ClientIP: *clientIP})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return ExitFailure
	}
	if format == replay.FormatJSONL {
		fmt.Fprintln(stderr, "apisessions recommend: request records keep no headers, cookies or bodies; only a HAR file can show grouping keys")
	}
	rep, err := Recommend(ctx, xs, Options{Max: *maxKeys})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return ExitFailure
	}
	if *output == "yaml" {
		err = rep.WriteYAML(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}
