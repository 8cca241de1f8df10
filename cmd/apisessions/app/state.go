package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/secretfile"
	"github.com/apisessions/apisessions/metrics"
	"github.com/apisessions/apisessions/state"
)

// newState connects to the shared state of state.redis; nil without it. Redis not answering
// at start is not fatal: the client starts down, parts are numbered locally, and it connects
// once Redis answers. A password that cannot be read is fatal.
func newState(ctx context.Context, cfg *config.Config, logger *slog.Logger, m *metrics.Registry) (*state.Client, error) {
	r := cfg.State.Redis
	if !r.Enabled() {
		return nil, nil
	}
	password, err := redisPassword(&r)
	if err != nil {
		return nil, err
	}
	c, err := state.New(r, state.Settings{Logger: logger, Password: password, RoundTrip: m.StateRoundTrip()})
	if err != nil {
		return nil, err
	}
	_ = c.Start(ctx) // logged by Start; the probe keeps trying
	return c, nil
}

// redisPassword reads state.redis.password_file or password_env; "" when neither is set.
func redisPassword(r *config.Redis) (string, error) {
	switch {
	case r.PasswordFile != "":
		return secretfile.ReadToken("state.redis.password_file", r.PasswordFile)
	case r.PasswordEnv != "":
		p := os.Getenv(r.PasswordEnv)
		if p == "" {
			return "", fmt.Errorf("state.redis.password_env names %s, which is unset or empty; export the Redis password in it or remove password_env", r.PasswordEnv)
		}
		return p, nil
	}
	return "", nil
}
