package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/explore/ui"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/risk"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/jsonl"
	"github.com/apisessions/apisessions/sinks/kafka"
	"github.com/apisessions/apisessions/sinks/otlp"
	"github.com/apisessions/apisessions/sinks/webhook"
	"github.com/apisessions/apisessions/store"
)

// sinkFactories lists the sink types this build can create. Adding a type is adding its
// factory here: config learns its name and keys from the list (sinkTypes), buildOutputs how to
// create it. The order is the one messages list the types in.
func sinkFactories() []sinks.Factory {
	return []sinks.Factory{
		store.Factory,
		jsonl.Factory,
		webhook.Factory,
		kafka.Factory,
		otlp.Factory,
	}
}

// sinkTypes describes the types of sinkFactories to config.
func sinkTypes() []config.SinkType {
	fs := sinkFactories()
	types := make([]config.SinkType, len(fs))
	for i, f := range fs {
		types[i] = f.ConfigType()
	}
	return types
}

// buildOutputs creates one pipeline output per configured sink, each with its queue, retries
// and spool, and returns the stores among them, which the explore API serves.
func buildOutputs(cfg *config.Config, logger *slog.Logger, stdout io.Writer) ([]sinks.Output, []*store.Store, error) {
	factories := map[string]sinks.Factory{}
	for _, f := range sinkFactories() {
		factories[f.Type] = f
	}
	// Validate has checked the zone; the store derives from it when a part's day is over.
	zone, err := time.LoadLocation(cfg.Sessions.DayBoundary)
	if err != nil {
		return nil, nil, fmt.Errorf("sessions.day_boundary: %w", err)
	}
	var stores []*store.Store
	outs := make([]sinks.Output, 0, len(cfg.Sinks))
	for _, sc := range cfg.Sinks {
		f, ok := factories[sc.Type]
		if !ok {
			closeOutputs(outs)
			return nil, nil, fmt.Errorf("sink %q: type %q is not available in this build", sc.Name, sc.Type)
		}
		log := logger.With("component", "sinks", "sink", sc.Name)
		sk, err := f.Create(sc, sinks.Settings{
			Logger:      log,
			Stdout:      stdout,
			DataDir:     cfg.Server.DataDir,
			Retention:   cfg.Sessions.Retention.Std(),
			IdleTimeout: cfg.Sessions.IdleTimeout.Std(),
			DayBoundary: zone,
			Risk:        risk.New(cfg.Sessions.Risk),
		})
		if err != nil {
			closeOutputs(outs)
			return nil, nil, fmt.Errorf("sink %q: %w", sc.Name, err)
		}
		out, err := sinks.NewOutput(sc, cfg.Server.DataDir, sk, log)
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = sk.Close(ctx)
			cancel()
			closeOutputs(outs)
			return nil, nil, fmt.Errorf("sink %q: %w", sc.Name, err)
		}
		if st, ok := sk.(*store.Store); ok {
			stores = append(stores, st)
		}
		outs = append(outs, out)
	}
	return outs, stores, nil
}

func closeOutputs(outs []sinks.Output) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range outs {
		_ = outs[i].Close(ctx)
	}
}

// newExplore builds the explore API and web UI over the first store sink, requiring token
// when it is not empty; without a store there is nothing to explore and the HTTP server
// serves only health and metrics.
func newExplore(stores []*store.Store, token string, writeTokens map[string]string, blocks explore.Blocker, logger *slog.Logger) http.Handler {
	if len(stores) == 0 {
		return nil
	}
	return explore.New(explore.Options{
		Store:       stores[0],
		Token:       token,
		UI:          ui.Handler(),
		Logger:      logger.With("component", "explore"),
		Blocks:      blocks,
		WriteTokens: writeTokens,
		Version:     Version,
	})
}

// replaySinks opens the configured sinks for "replay --sinks".
func replaySinks(stdout io.Writer) func(cfg *config.Config, logger *slog.Logger) (sessions.Emitter, func(context.Context) error, error) {
	return func(cfg *config.Config, logger *slog.Logger) (sessions.Emitter, func(context.Context) error, error) {
		outs, _, err := buildOutputs(cfg, logger, stdout)
		if err != nil {
			return nil, nil, err
		}
		p := sinks.NewPipeline(logger.With("component", "sinks"), outs)
		return p, p.Shutdown, nil
	}
}
