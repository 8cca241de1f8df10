package app

import (
	"cmp"
	"errors"
	"fmt"
	"os"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/internal/tlsclient"
)

// checkStartFiles checks what serve reads at start besides the configuration: the token
// files, the hash key (its file's mode and length, or the environment's), the gRPC
// listener's certificate files, and the Redis password and TLS files. validate runs it so
// that a configuration it calls valid does not stop serve. It reads files only; it connects to
// nothing and writes nothing (a hash key serve would generate is no error).
func checkStartFiles(cfg *config.Config) error {
	var errs []error
	if _, _, err := readTokens(cfg); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := findHashKey(cfg.Hashing.KeyFile, cmp.Or(cfg.Server.DataDir, defaultDataDir), os.Getenv, false); err != nil {
		errs = append(errs, err)
	}
	t := cfg.Server.GRPCTLS
	if err := extproc.CheckTLS(extproc.GRPCOptions{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}); err != nil {
		errs = append(errs, fmt.Errorf("server.grpc_tls: %w", err))
	}
	if r := &cfg.State.Redis; r.Enabled() {
		if _, err := redisPassword(r); err != nil {
			errs = append(errs, err)
		}
		if r.TLS.IsSet() {
			if _, err := tlsclient.Config(r.TLS); err != nil {
				errs = append(errs, fmt.Errorf("state.redis.%w", err))
			}
		}
	}
	return errors.Join(errs...)
}
