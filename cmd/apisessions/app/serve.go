package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/metrics"
	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/state"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("serve", "[--config FILE]", stderr)
	path := flags.String("config", "", "configuration file (default: built-in defaults)")
	level := flags.String("log-level", "info", "log level: debug, info, warn or error")
	grpcListen := flags.String("grpc-listen", "", "override server.grpc_listen (e.g. 127.0.0.1:0)")
	httpListen := flags.String("http-listen", "", "override server.http_listen")
	dataDir := flags.String("data-dir", "", "override server.data_dir (hash key, store)")
	if code := cliflags.Parse(flags, args, stderr); code >= 0 {
		return code
	}
	// Before any file exists: whatever the data directory's mode, what the server creates
	// (hash key, database, WAL, spool, rejects, jsonl files) is its owner's alone.
	restrictUmask()
	logger, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintf(stderr, "apisessions serve: %v\n", err)
		return exitUsage
	}
	overrides := func(c *config.Config) {
		for _, o := range []struct {
			flag, key string
			field     *string
		}{
			{*grpcListen, "server.grpc_listen", &c.Server.GRPCListen},
			{*httpListen, "server.http_listen", &c.Server.HTTPListen},
			{*dataDir, "server.data_dir", &c.Server.DataDir},
		} {
			if o.flag != "" {
				*o.field = o.flag
				// Messages about the value then point at the key's section, not at the
				// line whose value the flag replaced.
				delete(c.Positions, o.key)
			}
		}
	}
	cfg, err := loadConfig(*path)
	if err == nil {
		overrides(cfg)
		// A flag may open a listener to other machines: check the result as a whole.
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "apisessions serve: configuration not loaded:\n%v\n", err)
		if isUnreadable(err) {
			return exitUsage
		}
		return exitFailure
	}
	memoryLimit := applyMemoryLimit(&cfg.Server, logger)
	// Listen for SIGHUP before the ready line: a reload sent as soon as the server says it is
	// ready must never meet the default action, which would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := start(cfg, *path, overrides, memoryLimit, logger, stdout)
	if err != nil {
		logger.Error("start failed", "error", err)
		return exitFailure
	}
	return s.wait(ctx, hup)
}

// server is one running apisessions: the engine, the sinks and both listeners.
type server struct {
	logger     *slog.Logger
	configPath string
	overrides  func(*config.Config)
	keyFile    string // hashing.key_file at start: the key is read once, a reload keeps it
	cfg        atomic.Pointer[config.Config]

	engine  *sessions.Engine
	protect *protect.Engine
	// stopShare ends the protection engine's following of the shared blocks (state.redis).
	stopShare context.CancelFunc
	state     *state.Client // nil without state.redis
	pipeline  *sinks.Pipeline
	metrics   *metrics.Registry
	explore   http.Handler      // explore API and UI; nil without a store sink
	proc      extproc.Processor // the engine, timed for metrics
	ext       *extproc.Server
	grpc      *extproc.GRPCServer
	http      *http.Server
	grpcLn    net.Listener
	httpLn    net.Listener
	// metricsHTTP and metricsLn serve server.metrics_listen; nil when it is not set.
	metricsHTTP *http.Server
	metricsLn   net.Listener
	serveErr    chan error
	ready       atomic.Bool
}

// start builds every component and opens the listeners; memoryLimit (0: none) is the
// resident memory the ext_proc streams are guarded to. On error, whatever was started is
// stopped.
func start(cfg *config.Config, configPath string, overrides func(*config.Config), memoryLimit int64, logger *slog.Logger, stdout io.Writer) (_ *server, err error) {
	s := &server{logger: logger, configPath: configPath, overrides: overrides, serveErr: make(chan error, 3)}
	s.cfg.Store(cfg)
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	warnExposure(cfg, logger)
	apiToken, grpcToken, err := readTokens(cfg)
	if err != nil {
		return nil, err
	}
	outs, stores, err := buildOutputs(cfg, logger, stdout)
	if err != nil {
		return nil, err
	}
	var writeTokens map[string]string
	if f := cfg.Server.WriteTokensFile; f != "" {
		if writeTokens, err = secretfile.ReadNamedTokens("server.write_tokens_file", f); err != nil {
			closeOutputs(outs)
			return nil, err
		}
	}
	s.pipeline = sinks.NewPipeline(logger.With("component", "sinks"), outs)
	cleanup = append(cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Std())
		defer cancel()
		_ = s.pipeline.Shutdown(ctx)
	})

	s.metrics = metrics.New(buildInfo())
	if s.state, err = newState(context.Background(), cfg, logger, s.metrics); err != nil {
		return nil, err
	}
	var shared sessions.SharedParts
	var links sessions.SharedLinks
	src := metrics.Sources{Sinks: s.pipeline}
	if s.state != nil {
		cleanup = append(cleanup, func() { _ = s.state.Close() })
		shared, links, src.State = s.state.Parts(), s.state.Links(), s.state
	}
	var keySource string
	if s.engine, keySource, err = newEngine(cfg, logger, s.pipeline, shared, links); err != nil {
		return nil, err
	}
	s.keyFile = cfg.Hashing.KeyFile
	cleanup = append(cleanup, s.engine.Close)

	s.protect = protect.New(cfg.Protection, s.engine, nil)
	s.stopShare = func() {}
	if s.state != nil {
		var shareCtx context.Context
		shareCtx, s.stopShare = context.WithCancel(context.Background())
		cleanup = append(cleanup, s.stopShare)
		s.protect.Share(shareCtx, s.state.Protection(), logger.With("component", "protect"))
	}
	s.explore = newExplore(stores, apiToken, writeTokens, s.protect, logger)
	s.proc = s.metrics.Timed(s.engine)
	s.ext = extproc.New(s.extprocSettings(cfg))
	src.Extproc, src.Engine, src.Protect = s.ext, s.engine, s.protect
	if err := s.metrics.Watch(src); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s.grpc, err = extproc.NewGRPCServer(s.ext, extproc.GRPCOptions{
		MaxMessageBytes:      cfg.Server.MaxMessageBytes,
		MaxConcurrentStreams: cfg.Server.MaxConcurrentStreams,
		MaxStreams:           cfg.Server.MaxStreams,
		StreamIdleTimeout:    cfg.Server.StreamIdleTimeout.Std(),
		MemoryLimitBytes:     memoryLimit,
		CertFile:             cfg.Server.GRPCTLS.CertFile,
		KeyFile:              cfg.Server.GRPCTLS.KeyFile,
		ClientCAFile:         cfg.Server.GRPCTLS.ClientCAFile,
		Token:                grpcToken,
		Reflection:           cfg.Server.GRPCReflection,
	})
	if err != nil {
		return nil, fmt.Errorf("grpc server: %w", err)
	}
	cleanup = append(cleanup, s.grpc.Stop)
	if err := s.listen(cfg, apiToken); err != nil {
		return nil, err
	}
	s.serve()
	s.ext.SetServing(true)
	s.ready.Store(true)
	attrs := []any{"grpc_addr", s.grpcLn.Addr().String(), "http_addr", s.httpLn.Addr().String()}
	if s.metricsLn != nil {
		attrs = append(attrs, "metrics_addr", s.metricsLn.Addr().String())
	}
	logger.Info("ready", append(attrs, "config", configName(configPath), "sinks", len(outs), "hash_key", keySource)...)
	return s, nil
}

// newEngine reads the hash key for cfg and starts the sessions engine with it; keySource says
// where the key came from.
func newEngine(cfg *config.Config, logger *slog.Logger, emit sessions.Emitter, shared sessions.SharedParts, links sessions.SharedLinks) (_ *sessions.Engine, keySource string, _ error) {
	key, keySource, err := hashKey(cfg)
	if err != nil {
		return nil, "", err
	}
	e, err := sessions.New(cfg, sessions.Settings{Logger: logger, Emitter: emit, HashKey: key, SharedParts: shared, SharedLinks: links})
	if err != nil {
		return nil, "", fmt.Errorf("sessions engine: %w", err)
	}
	return e, keySource, nil
}

// listen opens the listeners and builds the HTTP servers; on error it closes what it opened.
func (s *server) listen(cfg *config.Config, apiToken string) (err error) {
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range opened {
				ln.Close()
			}
		}
	}()
	open := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listen: %w", what, err)
		}
		opened = append(opened, ln)
		return ln, nil
	}
	if s.grpcLn, err = open("grpc", cfg.Server.GRPCListen); err != nil {
		return err
	}
	if s.httpLn, err = open("http", cfg.Server.HTTPListen); err != nil {
		return err
	}
	s.http = s.newHTTPServer(s.routes(cfg, apiToken))
	if cfg.Server.MetricsListen != "" {
		if s.metricsLn, err = open("metrics", cfg.Server.MetricsListen); err != nil {
			return err
		}
		s.metricsHTTP = s.newHTTPServer(s.metricsRoutes())
	}
	return nil
}

func (s *server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}

// serve starts serving every listener; a listener that fails reports on serveErr.
func (s *server) serve() {
	go func() { s.serveErr <- s.grpc.Serve(s.grpcLn) }()
	go s.serveHTTP(s.http, s.httpLn)
	if s.metricsHTTP != nil {
		go s.serveHTTP(s.metricsHTTP, s.metricsLn)
	}
}

func (s *server) serveHTTP(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- err
	}
}

func configName(path string) string {
	if path == "" {
		return "(defaults)"
	}
	return path
}

// extprocSettings is the ext_proc server's part of cfg, with the server's processor and guard.
func (s *server) extprocSettings(cfg *config.Config) extproc.Settings {
	es := extprocSettings(cfg, s.logger, s.proc, s.metrics.PhaseObserver())
	es.Guard = s.protect
	return es
}

func extprocSettings(cfg *config.Config, logger *slog.Logger, p extproc.Processor, phases extproc.PhaseObserver) extproc.Settings {
	namespaces := make([]string, 0, len(cfg.Attacks.Metadata))
	for _, m := range cfg.Attacks.Metadata {
		namespaces = append(namespaces, m.Namespace)
	}
	return extproc.Settings{
		Logger:           logger,
		Processor:        p,
		SessionHeader:    cfg.Inline.SessionHeader,
		DynamicMetadata:  cfg.Inline.DynamicMetadata,
		AttackNamespaces: namespaces,
		PhaseObserver:    phases,
		BodyBudgetBytes:  cfg.Traffic.BodyBudgetBytes,
	}
}

// wait serves until ctx ends or a listener fails, reloading the configuration on SIGHUP, then
// shuts down: stop taking streams and drain them, end every session part, flush the sinks.
func (s *server) wait(ctx context.Context, hup <-chan os.Signal) int {
	code := exitOK
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			s.reload()
		case err := <-s.serveErr:
			s.logger.Error("listener failed", "error", err)
			code = exitFailure
			break loop
		}
	}
	if err := s.shutdown(); err != nil {
		s.logger.Error("shutdown incomplete", "error", err)
		code = exitFailure
	}
	return code
}

// reload loads the configuration file again. An invalid file is rejected with its errors and
// the running configuration is kept; a valid one is swapped in as a whole.
func (s *server) reload() {
	if s.configPath == "" {
		s.logger.Info("reload skipped: running on the defaults, no configuration file to read")
		return
	}
	next, err := loadConfig(s.configPath)
	if err != nil {
		s.logger.Warn("reload rejected, keeping the running configuration", "config", s.configPath, "error", err.Error())
		return
	}
	s.overrides(next)
	cur := s.cfg.Load()
	if err := s.engine.Reload(next); err != nil {
		s.logger.Warn("reload rejected, keeping the running configuration", "config", s.configPath, "error", err.Error())
		return
	}
	s.protect.Reload(next.Protection)
	s.ext.SetSettings(s.extprocSettings(next))
	if next.Hashing.KeyFile != s.keyFile {
		s.logger.Warn("hashing.key_file changed; the hash key in use is kept until restart")
	}
	if !reflect.DeepEqual(cur.Sinks, next.Sinks) || !reflect.DeepEqual(cur.Server, next.Server) || cur.State != next.State {
		s.logger.Warn("reload: changes to server, sinks and state take effect after a restart")
	}
	s.cfg.Store(next)
	s.logger.Info("configuration reloaded", "config", s.configPath)
}

func (s *server) shutdown() error {
	cfg := s.cfg.Load()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.Std())
	defer cancel()
	start := time.Now()
	s.ready.Store(false)
	s.ext.SetServing(false)
	// Streams first: each finished stream hands its exchange to the engine.
	s.grpc.Shutdown(ctx)
	// Then every live part ends with a final session record.
	s.engine.Close()
	s.stopShare()
	if s.state != nil {
		_ = s.state.Close()
	}
	// Then the sinks deliver what they accepted.
	var errs []error
	if err := s.pipeline.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("sinks: %w", err))
	}
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	if s.metricsHTTP != nil {
		if err := s.metricsHTTP.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics http: %w", err))
		}
	}
	s.logger.Info("shutdown complete", "duration_ms", time.Since(start).Milliseconds())
	return errors.Join(errs...)
}
