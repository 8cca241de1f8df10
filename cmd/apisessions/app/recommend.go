package app

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/recommend"
	"github.com/apisessions/apisessions/replay"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

// recommendCmd is "apisessions recommend [flags] FILE.har|FILE.jsonl": it reads the file,
// prints the suggestions to stdout and messages to stderr.
func recommendCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recommend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clientIP := clientIPFlag(fs)
	maxKeys := fs.Int("max", recommend.DefaultMax, "most grouping keys suggested, and separately the most context parameters")
	output := fs.String("output", "text", "text (explanations and the snippet) or yaml (the parameters: snippet only)")
	orderFlag := fs.String("order", string(replay.OrderTime), "time or file: the order the exchanges are read in, as for replay")
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
	order, orderErr := replay.ParseOrder(*orderFlag)
	switch {
	case !oneFile(fs, stderr):
		return exitUsage
	case orderErr != nil:
		fmt.Fprintf(stderr, "apisessions recommend: --order: %v\n", orderErr)
		return exitUsage
	case *output != "text" && *output != "yaml":
		fmt.Fprintf(stderr, "apisessions recommend: --output %q is not text or yaml\n", *output)
		return exitUsage
	case *maxKeys < 1 || *maxKeys > recommend.MaxParameters:
		fmt.Fprintf(stderr, "apisessions recommend: --max %d is out of range; use 1 to %d\n", *maxKeys, recommend.MaxParameters)
		return exitUsage
	case !validClientIP(fs, *clientIP, stderr):
		return exitUsage
	}
	xs, format, err := recorded.ReadFile(fs.Arg(0), recorded.Options{ClientIP: *clientIP})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return exitFailure
	}
	if format == recorded.FormatJSONL {
		fmt.Fprintln(stderr, "apisessions recommend: request records keep no headers, cookies or bodies; only a HAR file can show grouping keys")
	}
	rep, err := recommend.Recommend(ctx, replay.Ordered(xs, order), recommend.Options{Max: *maxKeys})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return exitFailure
	}
	if *output == "yaml" {
		err = rep.WriteYAML(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions recommend: %v\n", err)
		return exitFailure
	}
	return exitOK
}
