package app

import (
	"context"
	"io"
	"os"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/replay"
)

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	logger, _ := newLogger(stderr, "warn")
	if lvl := os.Getenv("APISESSIONS_LOG_LEVEL"); lvl != "" {
		if l, err := newLogger(stderr, lvl); err == nil {
			logger = l
		}
	}
	return replay.Run(ctx, args, stdout, stderr, replay.Deps{
		LoadConfig: loadConfig,
		Sinks:      replaySinks(stdout),
		Logger:     logger,
		HashKey: func(cfg *config.Config) ([]byte, error) {
			k, _, err := hashKey(cfg)
			return k, err
		},
	})
}
