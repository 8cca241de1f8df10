package replay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Deps are what the command lends Run.
type Deps struct {
	// LoadConfig loads and validates the configuration file ("" = the defaults). Nil uses
	// config.LoadAndValidate.
	LoadConfig func(path string) (*config.Config, error)
	// Sinks opens the configured sinks for --sinks: an emitter and a function that flushes and
	// closes them. Nil makes --sinks an error.
	Sinks func(cfg *config.Config, logger *slog.Logger) (sessions.Emitter, func(context.Context) error, error)
	// Logger receives the engine's and the sinks' log lines; nil discards.
	Logger *slog.Logger
	// HashKey finds the hash key for the configuration (hashing.key_file, the environment or
	// server.data_dir, as the server does). Nil makes an in-process replay an error.
	HashKey func(cfg *config.Config) ([]byte, error)
}

// hashKey asks the command for the hash key of cfg.
func (d Deps) hashKey(cfg *config.Config) ([]byte, error) {
	if d.HashKey == nil {
		return nil, errors.New("no hash key: this build does not say where to find one")
	}
	return d.HashKey(cfg)
}

// Exit statuses of Run.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Run is "apisessions replay [flags] FILE.har|FILE.jsonl": it replays the file and prints the
// sessions found to stdout, messages to stderr, and returns the exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, deps Deps) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	to := fs.String("to", "", "send the traffic as ext_proc streams to a running server at HOST:PORT instead of replaying in process")
	output := fs.String("output", "table", "table or jsonl (the last session record of each part)")
	toSinks := fs.Bool("sinks", false, "also write the records to the configured sinks (in process only)")
	clientIP := fs.String("client-ip", defaultClient, "client IP of HAR entries without a _clientIP field (HAR does not record the client)")
	dataDir := fs.String("data-dir", "", "override server.data_dir (where the hash key is kept)")
	now := fs.Bool("now", false, "shift the recorded times so the last request happened now, keeping every gap (recent traffic is not ended or purged at once)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: apisessions replay [flags] FILE.har|FILE.jsonl\n\n"+
			"Feeds recorded traffic through the same pipeline as live traffic and prints the sessions found.\n"+
			"HAR entries may carry the client address in a _clientIP field; JSON lines are request records\n"+
			"(parameters cannot be extracted again from them). Flags may also come from %s<FLAG>.\n\n", cliflags.Prefix)
		fs.PrintDefaults()
	}
	if code := cliflags.Parse(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "apisessions replay: give exactly one file, e.g. apisessions replay examples/demo.har")
		return ExitUsage
	}
	if *output != "table" && *output != "jsonl" {
		fmt.Fprintf(stderr, "apisessions replay: --output %q is not table or jsonl\n", *output)
		return ExitUsage
	}
	if _, err := netip.ParseAddr(*clientIP); err != nil {
		fmt.Fprintf(stderr, "apisessions replay: --client-ip %q is not an IP address\n", *clientIP)
		return ExitUsage
	}
	if *to != "" && *toSinks {
		fmt.Fprintln(stderr, "apisessions replay: --sinks writes from this process; with --to the server writes to its own sinks, so drop one of them")
		return ExitUsage
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	load := deps.LoadConfig
	if load == nil {
		load = loadDefault
	}
	cfg, err := load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: configuration not loaded:\n%v\n", err)
		return ExitFailure
	}
	if *dataDir != "" {
		cfg.Server.DataDir = *dataDir
	}
	xs, _, err := ReadFile(fs.Arg(0), ReadOptions{
		ClientIP:     *clientIP,
		MaxBodyBytes: cfg.Traffic.MaxBodyBytes,
		JA3Header:    cfg.TLS.JA3Header,
		JA4Header:    cfg.TLS.JA4Header,
		AttackHeader: cfg.Attacks.ResponseHeader,
	})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
		return ExitFailure
	}
	if *now {
		ShiftToNow(xs, time.Now())
	}
	var res *Result
	if *to != "" {
		res, err = Remote(ctx, *to, xs)
	} else {
		opts := Options{Config: cfg, Logger: logger}
		if opts.HashKey, err = deps.hashKey(cfg); err != nil {
			fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
			return ExitFailure
		}
		var closeSinks func(context.Context) error
		if *toSinks {
			if deps.Sinks == nil {
				fmt.Fprintln(stderr, "apisessions replay: --sinks is not available in this build")
				return ExitUsage
			}
			opts.Emitter, closeSinks, err = deps.Sinks(cfg, logger)
			if err != nil {
				fmt.Fprintf(stderr, "apisessions replay: sinks: %v\n", err)
				return ExitFailure
			}
		}
		res, err = Replay(ctx, xs, opts)
		if closeSinks != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout.Std())
			err = errors.Join(err, closeSinks(sctx))
			cancel()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
		return ExitFailure
	}
	if *output == "jsonl" {
		err = WriteJSONL(stdout, res.Sessions)
	} else {
		err = WriteTable(stdout, res.Sessions)
		if err == nil {
			fmt.Fprintf(stderr, "%d requests, %d session parts\n", res.Requests, len(res.Sessions))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

func loadDefault(path string) (*config.Config, error) {
	if path != "" {
		return config.LoadAndValidate(path)
	}
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ShiftToNow moves every exchange's times by one offset so that the latest request starts at
// now; the order of requests and the gaps between them are kept.
func ShiftToNow(xs []traffic.Exchange, now time.Time) {
	var last time.Time
	for i := range xs {
		if xs[i].Start.After(last) {
			last = xs[i].Start
		}
	}
	if last.IsZero() {
		return
	}
	d := now.Sub(last)
	for i := range xs {
		if !xs[i].Start.IsZero() {
			xs[i].Start = xs[i].Start.Add(d)
		}
		if !xs[i].End.IsZero() {
			xs[i].End = xs[i].End.Add(d)
		}
	}
}
