package app

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/secretfile"
)

// readTokens reads server.api_token_file and server.grpc_token_file; an unset file gives "".
func readTokens(cfg *config.Config) (api, grpc string, err error) {
	if f := cfg.Server.APITokenFile; f != "" {
		if api, err = secretfile.ReadToken("server.api_token_file", f); err != nil {
			return "", "", err
		}
	}
	if f := cfg.Server.GRPCTokenFile; f != "" {
		if grpc, err = secretfile.ReadToken("server.grpc_token_file", f); err != nil {
			return "", "", err
		}
	}
	return api, grpc, nil
}

// warnExposure says, once at start, what other machines may reach without authentication
// because the configuration opted out, and whether the data directory is open to others.
func warnExposure(cfg *config.Config, logger *slog.Logger) {
	s := cfg.Server
	if !config.LoopbackListen(s.HTTPListen) && s.APITokenFile == "" {
		logger.Warn("the HTTP listener answers other machines without a token (server.allow_unauthenticated_api): whoever reaches it reads the stored sessions",
			"http_listen", s.HTTPListen)
	}
	mtls := s.GRPCTLS.CertFile != "" && s.GRPCTLS.ClientCAFile != ""
	if !config.LoopbackListen(s.GRPCListen) && !mtls && s.GRPCTokenFile == "" {
		logger.Warn("the gRPC listener takes traffic from other machines without mTLS or a token (server.allow_unauthenticated_grpc): whoever reaches it can feed forged traffic into the sessions",
			"grpc_listen", s.GRPCListen)
	}
	if s.GRPCReflection {
		logger.Warn("gRPC reflection is on (server.grpc_reflection): it lists the services to every client")
	}
	warnDataDir(s.DataDir, logger)
}

// warnDataDir reports a data directory that group or others may enter or list. Files the
// server creates there are its owner's alone either way (see restrictUmask); files that were
// there before, and the names of all of them, are not.
func warnDataDir(dir string, logger *slog.Logger) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return // created 0700 when first needed
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		logger.Warn("the data directory is open to other users: they may list it and read what it held before",
			"data_dir", dir, "mode", fmt.Sprintf("%04o", perm), "fix", "chmod 700 "+dir)
	}
}
