package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc/remote"
	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/replay"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

// replayFlags are the flags and the file of "apisessions replay".
type replayFlags struct {
	config, to, api, output, clientIP, dataDir string
	sinks, now                                 bool
	order                                      replay.Order
	file                                       string
}

// replayCmd is "apisessions replay [flags] FILE.har|FILE.jsonl": it replays the file and
// prints the sessions found to stdout, messages to stderr.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, code := parseReplayFlags(args, stderr)
	if code >= 0 {
		return code
	}
	cfg, err := loadConfig(f.config)
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: configuration not loaded:\n%v\n", err)
		return exitFailure
	}
	if f.dataDir != "" {
		cfg.Server.DataDir = f.dataDir
	}
	xs, _, err := recorded.ReadFile(f.file, recorded.Options{
		ClientIP:     f.clientIP,
		MaxBodyBytes: cfg.Traffic.MaxBodyBytes,
		JA3Header:    cfg.TLS.JA3Header,
		JA4Header:    cfg.TLS.JA4Header,
		AttackHeader: cfg.Attacks.ResponseHeader,
	})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
		return exitFailure
	}
	if f.now {
		recorded.ShiftToNow(xs, time.Now())
	}
	var res *replay.Result
	if f.to != "" {
		res, err = replayRemote(ctx, f.to, cfg.Server.GRPCTokenFile, xs, f.order)
		if err == nil && f.api != "" {
			err = readStored(ctx, res, f.api, cfg.Server.APITokenFile, stderr)
		} else if err == nil {
			fmt.Fprintln(stderr, "apisessions replay: the server's answers name parts and keys only; add --api http://HOST:PORT to report what its store recorded (users, flows, counts)")
		}
	} else {
		res, err = replayInProcess(ctx, cfg, xs, f, replayLogger(stderr), stdout)
	}
	if err == nil {
		err = writeReplay(res, f.output, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions replay: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// parseReplayFlags parses and checks the command line; a code >= 0 ends the command with it.
func parseReplayFlags(args []string, stderr io.Writer) (replayFlags, int) {
	var f replayFlags
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "configuration file (default: built-in defaults)")
	fs.StringVar(&f.to, "to", "", "send the traffic as ext_proc streams to a running server at HOST:PORT instead of replaying in process")
	fs.StringVar(&f.api, "api", "", "with --to: once sent, read the parts from the server's explore API at this URL (http://HOST:PORT) and print what its store recorded; the token is server.api_token_file")
	fs.StringVar(&f.output, "output", "table", "table or jsonl (the last session record of each part)")
	fs.BoolVar(&f.sinks, "sinks", false, "also write the records to the configured sinks (in process only)")
	clientIP := clientIPFlag(fs)
	fs.StringVar(&f.dataDir, "data-dir", "", "override server.data_dir (where the hash key is kept)")
	order := fs.String("order", string(replay.OrderTime), "time (by each entry's start; entries without one stay after the entry before them) or file (as listed, for captures whose clocks are not to be trusted)")
	fs.BoolVar(&f.now, "now", false, "shift the recorded times so the last request happened now, keeping every gap (recent traffic is not ended or purged at once)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: apisessions replay [flags] FILE.har|FILE.jsonl\n\n"+
			"Feeds recorded traffic through the same pipeline as live traffic and prints the sessions found.\n"+
			"HAR entries may carry the client address in a _clientIP field; JSON lines are request records\n"+
			"(parameters cannot be extracted again from them). Flags may also come from %s<FLAG>.\n\n", cliflags.Prefix)
		fs.PrintDefaults()
	}
	if code := cliflags.Parse(fs, args, stderr); code >= 0 {
		return f, code
	}
	f.clientIP, f.file = *clientIP, fs.Arg(0)
	var orderErr error
	f.order, orderErr = replay.ParseOrder(*order)
	switch {
	case orderErr != nil:
		fmt.Fprintf(stderr, "apisessions replay: --order: %v\n", orderErr)
		return f, exitUsage
	case !oneFile(fs, stderr):
		return f, exitUsage
	case f.output != "table" && f.output != "jsonl":
		fmt.Fprintf(stderr, "apisessions replay: --output %q is not table or jsonl\n", f.output)
		return f, exitUsage
	case !validClientIP(fs, f.clientIP, stderr):
		return f, exitUsage
	case f.api != "" && f.to == "":
		fmt.Fprintln(stderr, "apisessions replay: --api reads what a server stored of the traffic sent with --to; give --to too")
		return f, exitUsage
	case f.api != "" && !validAPIURL(f.api):
		fmt.Fprintf(stderr, "apisessions replay: --api %.64q is not an http:// or https:// URL of the server's HTTP listener\n", f.api)
		return f, exitUsage
	case f.to != "" && f.sinks:
		fmt.Fprintln(stderr, "apisessions replay: --sinks writes from this process; with --to the server writes to its own sinks, so drop one of them")
		return f, exitUsage
	}
	return f, -1
}

// replayLogger logs the engine's and the sinks' warnings, or what APISESSIONS_LOG_LEVEL asks
// for: replay prints its findings, not a log.
func replayLogger(stderr io.Writer) *slog.Logger {
	logger, _ := newLogger(stderr, "warn")
	if lvl := os.Getenv("APISESSIONS_LOG_LEVEL"); lvl != "" {
		if l, err := newLogger(stderr, lvl); err == nil {
			logger = l
		}
	}
	return logger
}

// replayRemote sends the exchanges to the server at addr (replay --to), with the token of
// tokenFile (the configuration's server.grpc_token_file) when it is set.
func replayRemote(ctx context.Context, addr, tokenFile string, xs []traffic.Exchange, order replay.Order) (*replay.Result, error) {
	var token string
	if tokenFile != "" {
		var err error
		if token, err = secretfile.ReadToken("server.grpc_token_file", tokenFile); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	}
	conn, err := remote.DialToken(addr, token)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer conn.Close()
	return replay.Remote(ctx, xs, conn, order)
}

// replayInProcess replays the exchanges through an engine of cfg in f.order, and with f.sinks
// through the configured sinks too, which are flushed before it returns.
func replayInProcess(ctx context.Context, cfg *config.Config, xs []traffic.Exchange, f replayFlags, logger *slog.Logger, stdout io.Writer) (*replay.Result, error) {
	key, _, err := hashKey(cfg)
	if err != nil {
		return nil, err
	}
	opts := replay.Options{Config: cfg, Logger: logger, HashKey: key, Order: f.order}
	var closeSinks func(context.Context) error
	if f.sinks {
		opts.Emitter, closeSinks, err = replaySinks(stdout)(cfg, logger)
		if err != nil {
			return nil, fmt.Errorf("sinks: %w", err)
		}
	}
	res, err := replay.Replay(ctx, xs, opts)
	if closeSinks != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout.Std())
		err = errors.Join(err, closeSinks(sctx))
		cancel()
	}
	return res, err
}

// writeReplay prints the parts found: a table (and a count on stderr) or JSON lines.
func writeReplay(res *replay.Result, output string, stdout, stderr io.Writer) error {
	if output == "jsonl" {
		return replay.WriteJSONL(stdout, res.Sessions)
	}
	if err := replay.WriteResult(stdout, res); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d requests, %d session parts\n", res.Requests, len(res.Sessions))
	return nil
}

// storedWait bounds how long replay --api waits for the server's store to hold what was sent.
const storedWait = 30 * time.Second

// readStored replaces the parts of a replay --to with what the server at api stored of them.
func readStored(ctx context.Context, res *replay.Result, api, tokenFile string, stderr io.Writer) error {
	var token string
	if tokenFile != "" {
		var err error
		if token, err = secretfile.ReadToken("server.api_token_file", tokenFile); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	r := &apiParts{base: strings.TrimRight(api, "/"), token: token, client: &http.Client{Timeout: 10 * time.Second}}
	missing, err := replay.Stored(ctx, res, r, storedWait)
	if err != nil {
		return err
	}
	if missing > 0 {
		fmt.Fprintf(stderr, "apisessions replay: the server's store did not hold %d of the %d parts within %s; they show what its answers said\n",
			missing, len(res.Sessions), storedWait)
	}
	return nil
}

// validAPIURL reports whether s is an http or https URL with a host.
func validAPIURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == ""
}

// apiParts reads parts from a server's explore API (replay.PartReader).
type apiParts struct {
	base, token string
	client      *http.Client
}

// maxPartAnswer bounds one part answer read (the record, one request and the statistics).
const maxPartAnswer = 8 << 20

func (a *apiParts) StoredPart(ctx context.Context, session, part string) (*record.Session, bool, error) {
	u := a.base + "/api/v1/sessions/" + url.PathEscape(session) + "/" + url.PathEscape(part) + "?limit=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Session *record.Session `json:"session"`
		Error   string          `json:"error"`
	}
	derr := json.NewDecoder(io.LimitReader(resp.Body, maxPartAnswer)).Decode(&body)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("%s: %s", resp.Status, replay.Clean(body.Error, 200))
	case derr != nil || body.Session == nil:
		return nil, false, fmt.Errorf("not a part answer: %v", derr)
	}
	return body.Session, true, nil
}
