package app

import (
	"context"
	"fmt"
	"io"

	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/internal/cliflags"
	"github.com/apisessions/apisessions/internal/secretfile"
)

func envoyConfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("envoy-config", "[--config FILE] [--mode observability|inline] [--upstream HOST:PORT] [--processor HOST:PORT[,HOST:PORT...]] [--replicas [--affinity auto|none|LIST]]", stderr)
	path := flags.String("config", "", "apisessions configuration the bootstrap is for (default: built-in defaults)")
	mode := flags.String("mode", envoy.ModeObservability, "ext_proc mode: observability (passive, no added latency) or inline")
	upstream := flags.String("upstream", envoy.DefaultUpstream, "HOST:PORT of the protected API")
	processor := flags.String("processor", envoy.DefaultProcessor, "HOST:PORT of apisessions' gRPC listener; with --replicas a DNS name that resolves to every replica (Kubernetes: a headless Service), or a comma-separated list")
	replicas := flags.Bool("replicas", false, "several apisessions replicas behind --processor: gRPC health checks, outlier detection and session affinity")
	affinity := flags.String("affinity", envoy.AffinityAuto, "with --replicas, what keeps a session on one replica: auto (from the grouping keys), none, or a list of header:NAME, cookie:NAME and ip")
	listenPort := flags.Int("listen-port", envoy.DefaultListenPort, "port Envoy listens on for API clients")
	plaintext := flags.Bool("plaintext", false, "plain HTTP listener: no TLS termination, so no JA3/JA4 fingerprints")
	certFile := flags.String("cert-file", envoy.DefaultCertFile, "listener certificate file, as Envoy sees it")
	keyFile := flags.String("key-file", envoy.DefaultKeyFile, "listener private key file, as Envoy sees it")
	if code := cliflags.Parse(flags, args, stderr); code >= 0 {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "apisessions envoy-config: configuration not loaded:\n%v\n", err)
		if isUnreadable(err) {
			return exitUsage
		}
		return exitFailure
	}
	// The bootstrap must carry the token apisessions will ask for: read it as serve does.
	var grpcToken string
	if f := cfg.Server.GRPCTokenFile; f != "" {
		if grpcToken, err = secretfile.ReadToken("server.grpc_token_file", f); err != nil {
			fmt.Fprintf(stderr, "apisessions envoy-config: %v\n", err)
			return exitFailure
		}
	}
	out, err := envoy.Render(cfg, envoy.Options{
		Mode:       *mode,
		Upstream:   *upstream,
		Processor:  *processor,
		Replicas:   *replicas,
		Affinity:   *affinity,
		ListenPort: *listenPort,
		Plaintext:  *plaintext,
		CertFile:   *certFile,
		KeyFile:    *keyFile,
		GRPCToken:  grpcToken,
	})
	if err != nil {
		fmt.Fprintf(stderr, "apisessions envoy-config: %v\n", err)
		return exitUsage
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "apisessions envoy-config: %v\n", err)
		return exitFailure
	}
	if *mode != envoy.ModeInline && cfg.Protection.Enabled() {
		fmt.Fprintln(stderr, "apisessions envoy-config: note: "+protectionModeNote)
	}
	return exitOK
}
