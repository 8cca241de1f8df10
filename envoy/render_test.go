package envoy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/extproc"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	header_mutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

// parseBootstrap decodes a bootstrap the way Validate does.
func parseBootstrap(t *testing.T, doc []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatalf("parse YAML: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("decode bootstrap: %v", err)
	}
	return &b
}

// rendered is a bootstrap with the parts the tests look at unpacked.
type rendered struct {
	boot     *bootstrapv3.Bootstrap
	hcm      *hcmv3.HttpConnectionManager
	mutation *header_mutationv3.HeaderMutation // nil when there is none
	extProc  *filterv3.ExternalProcessor
	filters  []string
}

func unpack(t *testing.T, doc []byte) rendered {
	t.Helper()
	r := rendered{boot: parseBootstrap(t, doc)}
	ls := r.boot.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("want one listener with one filter chain and one network filter, got %v", ls)
	}
	r.hcm = &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(r.hcm); err != nil {
		t.Fatalf("unpack the HTTP connection manager: %v", err)
	}
	for _, f := range r.hcm.GetHttpFilters() {
		r.filters = append(r.filters, f.GetName())
		switch f.GetName() {
		case nameHeaderMutation:
			r.mutation = &header_mutationv3.HeaderMutation{}
			if err := f.GetTypedConfig().UnmarshalTo(r.mutation); err != nil {
				t.Fatalf("unpack header_mutation: %v", err)
			}
		case nameExtProc:
			r.extProc = &filterv3.ExternalProcessor{}
			if err := f.GetTypedConfig().UnmarshalTo(r.extProc); err != nil {
				t.Fatalf("unpack ext_proc: %v", err)
			}
		}
	}
	if r.extProc == nil {
		t.Fatal("no ext_proc filter")
	}
	return r
}

func (r rendered) cluster(t *testing.T, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range r.boot.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

// requestMutations lists the header_mutation steps as "-name" (remove) and "+name=value".
func (r rendered) requestMutations() []string {
	var out []string
	for _, m := range r.mutation.GetMutations().GetRequestMutations() {
		if rm := m.GetRemove(); rm != "" {
			out = append(out, "-"+rm)
		} else if h := m.GetAppend().GetHeader(); h != nil {
			out = append(out, "+"+h.GetKey()+"="+h.GetValue())
		}
	}
	return out
}

// accessLogFields are the JSON fields of the listener's access log.
func (r rendered) accessLogFields(t *testing.T) map[string]string {
	t.Helper()
	logs := r.hcm.GetAccessLog()
	if len(logs) != 1 {
		t.Fatalf("want one access log, got %d", len(logs))
	}
	var out streamv3.StdoutAccessLog
	if err := logs[0].GetTypedConfig().UnmarshalTo(&out); err != nil {
		t.Fatalf("unpack the access log: %v", err)
	}
	fields := map[string]string{}
	for k, v := range out.GetLogFormat().GetJsonFormat().GetFields() {
		fields[k] = v.GetStringValue()
	}
	return fields
}

func withParams(ps ...config.Parameter) *config.Config {
	c := config.Default()
	c.Parameters = ps
	return c
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   *config.Config
		opts  Options
		check func(t *testing.T, r rendered)
	}{
		{
			name: "defaults",
			cfg:  nil,
			check: func(t *testing.T, r rendered) {
				ep := r.extProc
				if !ep.GetObservabilityMode() || !ep.GetFailureModeAllow() {
					t.Errorf("observability_mode %v, failure_mode_allow %v; want both true", ep.GetObservabilityMode(), ep.GetFailureModeAllow())
				}
				pm := ep.GetProcessingMode()
				if pm.GetRequestBodyMode() != filterv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
					t.Errorf("body modes %v/%v without body parameters, want NONE/NONE", pm.GetRequestBodyMode(), pm.GetResponseBodyMode())
				}
				if pm.GetResponseHeaderMode() != filterv3.ProcessingMode_SEND {
					t.Errorf("response_header_mode %v, want SEND: records need the status", pm.GetResponseHeaderMode())
				}
				for _, a := range []string{"source.address", "source.port", "request.id", "request.time"} {
					if !slices.Contains(ep.GetRequestAttributes(), a) {
						t.Errorf("request_attributes %v lack %s", ep.GetRequestAttributes(), a)
					}
				}
				if !slices.Contains(ep.GetResponseAttributes(), "response.code") {
					t.Errorf("response_attributes %v lack response.code", ep.GetResponseAttributes())
				}
				want := []string{"-x-client-ja3", "-x-client-ja4", "+x-client-ja3=%TLS_JA3_FINGERPRINT%", "+x-client-ja4=%TLS_JA4_FINGERPRINT%"}
				if got := r.requestMutations(); !slices.Equal(got, want) {
					t.Errorf("header mutations %v, want %v", got, want)
				}
				if want := []string{nameHeaderMutation, nameExtProc, nameRouter}; !slices.Equal(r.filters, want) {
					t.Errorf("filters %v, want %v", r.filters, want)
				}
				if !r.hcm.GetUseRemoteAddress().GetValue() || r.hcm.GetXffNumTrustedHops() != 0 {
					t.Errorf("use_remote_address %v, xff hops %d; want true, 0", r.hcm.GetUseRemoteAddress(), r.hcm.GetXffNumTrustedHops())
				}
				l := r.boot.GetStaticResources().GetListeners()[0]
				if len(l.GetListenerFilters()) != 1 || l.GetFilterChains()[0].GetTransportSocket() == nil {
					t.Error("the TLS listener lacks the TLS inspector or the TLS transport socket")
				}
				proc := r.cluster(t, "apisessions")
				if proc.GetType() != clusterv3.Cluster_STATIC {
					t.Errorf("processor cluster type %v for an IP, want STATIC", proc.GetType())
				}
				if th := proc.GetCircuitBreakers().GetThresholds(); len(th) == 0 || th[0].GetMaxRequests().GetValue() < 100000 {
					t.Errorf("processor circuit breakers %v, want max_requests raised to at least 100000", th)
				}
				if _, ok := proc.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
					t.Error("the processor cluster does not set HTTP/2 protocol options")
				}
			},
		},
		{
			name: "request body parameter",
			cfg:  withParams(config.Parameter{Name: "body_token", In: config.InRequestBody, Path: "$.token", Group: true}),
			check: func(t *testing.T, r rendered) {
				pm := r.extProc.GetProcessingMode()
				if pm.GetRequestBodyMode() != filterv3.ProcessingMode_STREAMED || pm.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
					t.Errorf("body modes %v/%v, want STREAMED/NONE", pm.GetRequestBodyMode(), pm.GetResponseBodyMode())
				}
			},
		},
		{
			name: "response body parameter",
			cfg: withParams(
				config.Parameter{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true},
				config.Parameter{Name: "query_token", In: config.InRequestQuery, Key: "token"},
			),
			check: func(t *testing.T, r rendered) {
				pm := r.extProc.GetProcessingMode()
				if pm.GetRequestBodyMode() != filterv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != filterv3.ProcessingMode_STREAMED {
					t.Errorf("body modes %v/%v, want NONE/STREAMED", pm.GetRequestBodyMode(), pm.GetResponseBodyMode())
				}
			},
		},
		{
			name: "inline with protection rules",
			cfg: func() *config.Config {
				c := config.Default()
				c.Protection.Rules = []config.ProtectionRule{
					{Name: "t", Action: config.ActionTag, Tag: config.TagAction{Header: "x-apisessions-verdict"}},
					{Name: "b", Action: config.ActionBlock, Block: config.BlockAction{Status: 403, Headers: map[string]string{"x-blocked-by": "me"}}},
					{Name: "r", Action: config.ActionRateLimit, RateLimit: config.RateLimitAction{Rate: "1/s", By: config.BySession}},
				}
				return c
			}(),
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				ep := r.extProc
				want := "^(x-apisessions-session|x-apisessions-verdict|x-blocked-by|retry-after)$"
				if got := ep.GetMutationRules().GetAllowExpression().GetRegex(); got != want {
					t.Errorf("mutation allow expression %q, want %q", got, want)
				}
				if got := r.requestMutations(); !slices.Contains(got, "-x-apisessions-verdict") {
					t.Errorf("header mutations %v do not remove a client's x-apisessions-verdict", got)
				}
			},
		},
		{
			name: "inline",
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				ep := r.extProc
				if ep.GetObservabilityMode() {
					t.Error("observability_mode is on in inline mode")
				}
				if ep.GetMessageTimeout().AsDuration() <= 0 {
					t.Error("inline mode has no message_timeout")
				}
				if got := ep.GetMutationRules().GetAllowExpression().GetRegex(); got != "^x-apisessions-session$" {
					t.Errorf("mutation allow expression %q, want only the session header", got)
				}
				if !ep.GetMutationRules().GetDisallowAll().GetValue() {
					t.Error("mutation rules do not disallow everything else")
				}
				if ep.GetMetadataOptions() != nil {
					t.Errorf("metadata options %v, want none: inline.dynamic_metadata is off by default", ep.GetMetadataOptions())
				}
				if got := r.accessLogFields(t); got["session"] != "%REQ(x-apisessions-session)%" || got["part"] != "" {
					t.Errorf("access log session %q, part %q; want the session header and no part", got["session"], got["part"])
				}
				if ep.GetRouteCacheAction() != filterv3.ExternalProcessor_RETAIN {
					t.Errorf("route_cache_action %v, want RETAIN", ep.GetRouteCacheAction())
				}
				if got := r.requestMutations(); !slices.Contains(got, "-x-apisessions-session") {
					t.Errorf("header mutations %v do not remove a client-sent session header", got)
				}
			},
		},
		{
			name: "inline with dynamic metadata",
			cfg: func() *config.Config {
				c := config.Default()
				c.Inline.DynamicMetadata = true
				return c
			}(),
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				if got := r.extProc.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(); !slices.Equal(got, []string{MetadataNamespace}) {
					t.Errorf("receiving namespaces %v, want [apisessions]", got)
				}
				got := r.accessLogFields(t)
				if got["session"] != "%DYNAMIC_METADATA(apisessions:session)%" || got["part"] != "%DYNAMIC_METADATA(apisessions:part)%" {
					t.Errorf("access log session %q, part %q; want both from the dynamic metadata", got["session"], got["part"])
				}
			},
		},
		{
			name: "inline bodies",
			cfg: withParams(
				config.Parameter{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true},
				config.Parameter{Name: "email", In: config.InRequestBody, Path: "$.email"},
			),
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				ep := r.extProc
				pm := ep.GetProcessingMode()
				if pm.GetRequestBodyMode() != filterv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
					t.Errorf("body modes %v/%v, want NONE both: bodies are asked for per request", pm.GetRequestBodyMode(), pm.GetResponseBodyMode())
				}
				if !ep.GetAllowModeOverride() || ep.GetSendBodyWithoutWaitingForHeaderResponse() {
					t.Errorf("allow_mode_override %v, send_body_without_waiting %v; want true, false", ep.GetAllowModeOverride(), ep.GetSendBodyWithoutWaitingForHeaderResponse())
				}
				// Every override apisessions sends must equal an entry exactly (Envoy's check).
				want := []*filterv3.ProcessingMode{extproc.OverrideMode(true, false), extproc.OverrideMode(false, true), extproc.OverrideMode(true, true)}
				if diff := cmp.Diff(want, ep.GetAllowedOverrideModes(), protocmp.Transform()); diff != "" {
					t.Errorf("allowed_override_modes (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "inline request body only",
			cfg:  withParams(config.Parameter{Name: "email", In: config.InRequestBody, Path: "$.email"}),
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				want := []*filterv3.ProcessingMode{extproc.OverrideMode(true, false)}
				if diff := cmp.Diff(want, r.extProc.GetAllowedOverrideModes(), protocmp.Transform()); diff != "" {
					t.Errorf("allowed_override_modes (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "inline without session header or metadata",
			cfg: func() *config.Config {
				c := config.Default()
				c.Inline = config.Inline{}
				return c
			}(),
			opts: Options{Mode: ModeInline},
			check: func(t *testing.T, r rendered) {
				ep := r.extProc
				if ep.GetMutationRules().GetAllowExpression() != nil || !ep.GetMutationRules().GetDisallowAll().GetValue() {
					t.Errorf("mutation rules %v, want everything disallowed", ep.GetMutationRules())
				}
				if ep.GetMetadataOptions() != nil {
					t.Errorf("metadata options %v, want none", ep.GetMetadataOptions())
				}
			},
		},
		{
			name: "plaintext",
			opts: Options{Plaintext: true, ListenPort: 8000},
			check: func(t *testing.T, r rendered) {
				l := r.boot.GetStaticResources().GetListeners()[0]
				if len(l.GetListenerFilters()) != 0 || l.GetFilterChains()[0].GetTransportSocket() != nil {
					t.Error("the plaintext listener has TLS pieces")
				}
				if got := l.GetAddress().GetSocketAddress().GetPortValue(); got != 8000 {
					t.Errorf("listen port %d, want 8000", got)
				}
				// Forged fingerprints are still stripped.
				want := []string{"-x-client-ja3", "-x-client-ja4"}
				if got := r.requestMutations(); !slices.Equal(got, want) {
					t.Errorf("header mutations %v, want %v", got, want)
				}
			},
		},
		{
			name: "attack metadata namespaces",
			cfg: func() *config.Config {
				c := config.Default()
				c.Attacks.Metadata = []config.AttackMetadata{
					{Namespace: "envoy.filters.http.coraza", Key: "malicious"},
					{Namespace: "envoy.filters.http.ext_authz", Key: "denied"},
					{Namespace: "envoy.filters.http.coraza", Key: "other"},
				}
				return c
			}(),
			check: func(t *testing.T, r rendered) {
				got := r.extProc.GetMetadataOptions().GetForwardingNamespaces().GetUntyped()
				want := []string{"envoy.filters.http.coraza", "envoy.filters.http.ext_authz"}
				if !slices.Equal(got, want) {
					t.Errorf("forwarding namespaces %v, want %v", got, want)
				}
			},
		},
		{
			name: "client ip from header",
			cfg: func() *config.Config {
				c := config.Default()
				c.Traffic.ClientIP = config.ClientIP{From: "X-Forwarded-For", TrustedHops: 2}
				return c
			}(),
			check: func(t *testing.T, r rendered) {
				if !r.hcm.GetUseRemoteAddress().GetValue() || r.hcm.GetXffNumTrustedHops() != 2 {
					t.Errorf("use_remote_address %v, xff hops %d; want true, 2", r.hcm.GetUseRemoteAddress(), r.hcm.GetXffNumTrustedHops())
				}
			},
		},
		{
			name: "dns hosts and custom headers",
			cfg: func() *config.Config {
				c := config.Default()
				c.TLS = config.TLS{JA3Header: "X-JA3", JA4Header: ""}
				return c
			}(),
			opts: Options{Upstream: "api.internal:9000", Processor: "apisessions.apisessions.svc.cluster.local:50051", CertFile: "/certs/tls.crt", KeyFile: "/certs/tls.key"},
			check: func(t *testing.T, r rendered) {
				for name, host := range map[string]string{"apisessions": "apisessions.apisessions.svc.cluster.local", "backend": "api.internal"} {
					c := r.cluster(t, name)
					if c.GetType() != clusterv3.Cluster_STRICT_DNS {
						t.Errorf("cluster %s type %v for a DNS name, want STRICT_DNS", name, c.GetType())
					}
					got := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
					if got != host {
						t.Errorf("cluster %s address %q, want %q", name, got, host)
					}
				}
				want := []string{"-x-ja3", "+x-ja3=%TLS_JA3_FINGERPRINT%"}
				if got := r.requestMutations(); !slices.Equal(got, want) {
					t.Errorf("header mutations %v, want %v", got, want)
				}
			},
		},
		{
			name: "processor over mtls",
			cfg: func() *config.Config {
				c := config.Default()
				c.Server.GRPCTLS = config.GRPCTLS{CertFile: "/tls/apisessions.crt", KeyFile: "/tls/apisessions.key", ClientCAFile: "/tls/ca.crt"}
				return c
			}(),
			opts: Options{Processor: "[::1]:50051"},
			check: func(t *testing.T, r rendered) {
				proc := r.cluster(t, "apisessions")
				if proc.GetTransportSocket() == nil {
					t.Error("the processor cluster has no TLS transport socket though apisessions serves TLS")
				}
				got := proc.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
				if got != "::1" || proc.GetType() != clusterv3.Cluster_STATIC {
					t.Errorf("processor address %q type %v, want ::1 STATIC", got, proc.GetType())
				}
			},
		},
		{
			name: "processor with a token",
			cfg: func() *config.Config {
				c := config.Default()
				c.Server.GRPCTokenFile = "/run/secrets/apisessions-grpc-token"
				return c
			}(),
			opts: Options{Mode: ModeInline, Processor: "apisessions:50051", GRPCToken: "tok-0123456789abcdef"},
			check: func(t *testing.T, r rendered) {
				md := r.extProc.GetGrpcService().GetInitialMetadata()
				if len(md) != 1 || md[0].GetKey() != "authorization" || md[0].GetValue() != "Bearer tok-0123456789abcdef" {
					t.Errorf("initial_metadata %v, want authorization: Bearer <token>", md)
				}
				if r.extProc.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "apisessions" {
					t.Error("the token moved the ext_proc filter off the apisessions cluster")
				}
			},
		},
		{
			name: "processor over mtls with a token",
			cfg: func() *config.Config {
				c := config.Default()
				c.Server.GRPCTLS = config.GRPCTLS{CertFile: "/tls/apisessions.crt", KeyFile: "/tls/apisessions.key", ClientCAFile: "/tls/ca.crt"}
				c.Server.GRPCTokenFile = "/run/secrets/apisessions-grpc-token"
				return c
			}(),
			opts: Options{Processor: "apisessions.internal:50051", GRPCToken: "tok-0123456789abcdef"},
			check: func(t *testing.T, r rendered) {
				if r.cluster(t, "apisessions").GetTransportSocket() == nil {
					t.Error("the processor cluster has no TLS transport socket")
				}
				if md := r.extProc.GetGrpcService().GetInitialMetadata(); len(md) != 1 {
					t.Errorf("initial_metadata %v, want the token", md)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(tc.cfg, tc.opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if err := Validate(got); err != nil {
				t.Fatalf("the rendered bootstrap fails validation: %v", err)
			}
			tc.check(t, unpack(t, got))
			checkGolden(t, tc.name, got)
		})
	}
}

// checkGolden compares a rendered bootstrap with testdata/render/NAME.yaml (spaces as -),
// rewriting the file first with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("testdata", "render", strings.ReplaceAll(name, " ", "-")+".yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run go test ./envoy -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Render for %s differs from %s (go test ./envoy -update rewrites it); got:\n%s", name, golden, got)
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	tests := []renderError{
		{name: "unknown mode", opts: Options{Mode: "passive"}, want: `mode "passive" is unknown; use observability or inline`},
		{name: "upstream without port", opts: Options{Upstream: "api.internal"}, want: `upstream "api.internal": missing port`},
		{name: "upstream port zero", opts: Options{Upstream: "127.0.0.1:0"}, want: `port "0" is not a number from 1 to 65535`},
		{name: "upstream port too big", opts: Options{Upstream: "127.0.0.1:65536"}, want: `port "65536"`},
		{name: "upstream port not a number", opts: Options{Upstream: "127.0.0.1:http"}, want: `port "http"`},
		{name: "processor without host", opts: Options{Processor: ":50051"}, want: `processor ":50051": host is empty`},
		{name: "processor bad host", opts: Options{Processor: "bad host!:50051"}, want: "neither an IP address nor a DNS name"},
		{name: "processor unbracketed ipv6", opts: Options{Processor: "::1:50051"}, want: "brackets"},
		{name: "processor ipv6 zone", opts: Options{Processor: "[fe80::1%eth0]:50051"}, want: "zones are not supported"},
		{name: "listen port", opts: Options{ListenPort: 70000}, want: "listen port 70000 is out of range"},
		{name: "certificate path with newline", opts: Options{CertFile: "/a\nb"}, want: "certificate file"},
		{name: "bad ja3 header", cfg: func(c *config.Config) { c.TLS.JA3Header = "x ja3" }, want: `tls.ja3_header "x ja3" is not a valid HTTP header name`},
		{name: "bad session header", cfg: func(c *config.Config) { c.Inline.SessionHeader = "x:y" }, opts: Options{Mode: ModeInline}, want: "inline.session_header"},
		{name: "session header is a fingerprint header", cfg: func(c *config.Config) { c.Inline.SessionHeader = "x-client-ja3" }, opts: Options{Mode: ModeInline}, want: "also a fingerprint header"},
		{name: "bad namespace", cfg: func(c *config.Config) { c.Attacks.Metadata = []config.AttackMetadata{{Namespace: "a b"}} }, want: "attacks.metadata[0].namespace"},
		{name: "trusted hops", cfg: func(c *config.Config) { c.Traffic.ClientIP = config.ClientIP{From: "x-forwarded-for", TrustedHops: -1} }, want: "trusted_hops -1 is out of range"},
		{name: "token file without the token", cfg: func(c *config.Config) { c.Server.GRPCTokenFile = "/run/secrets/grpc-token" },
			want: "server.grpc_token_file is set but no token was given; pass the file's token (apisessions envoy-config reads it from /run/secrets/grpc-token)"},
		{name: "token with a line break", opts: Options{GRPCToken: "SECRET\nx"}, want: "visible ASCII"},
	}
	checkRenderErrors(t, tests)
}

// renderError is a configuration and options that Render must refuse, with part of the error.
type renderError struct {
	name string
	cfg  func(c *config.Config)
	opts Options
	want string
}

// checkRenderErrors renders each case and checks its error.
func checkRenderErrors(t *testing.T, tests []renderError) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			if tc.cfg != nil {
				tc.cfg(c)
			}
			out, err := Render(c, tc.opts)
			if err == nil {
				t.Fatalf("Render accepted %s and returned %d bytes", tc.name, len(out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render error for %s is %q, want it to contain %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want endpoint
	}{
		{"127.0.0.1:8080", endpoint{Host: "127.0.0.1", Port: 8080}},
		{"[::1]:50051", endpoint{Host: "::1", Port: 50051}},
		{"[::ffff:10.0.0.1]:1", endpoint{Host: "::ffff:10.0.0.1", Port: 1}},
		{"API.Example.com.:443", endpoint{Host: "api.example.com", Port: 443, DNS: true}},
		{"_grpc.svc:65535", endpoint{Host: "_grpc.svc", Port: 65535, DNS: true}},
		{"localhost:10000", endpoint{Host: "localhost", Port: 10000, DNS: true}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseEndpoint(tc.in)
			if err != nil {
				t.Fatalf("parseEndpoint(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("parseEndpoint(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "-a.example:1", "a..b:1", strings.Repeat("a", 64) + ".example:1", "a\n:1", "[::1:1"} {
		if _, err := parseEndpoint(bad); err == nil {
			t.Errorf("parseEndpoint(%q) accepted it", bad)
		}
	}
}

// TestRenderHostileNames: names end up in comments and values; none may break out of them.
func TestRenderHostileNames(t *testing.T) {
	t.Parallel()
	c := withParams(config.Parameter{Name: "x\nadmin: {evil: true}\n#", In: config.InRequestBody, Path: "$.a"})
	out, err := Render(c, Options{})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "admin: {evil") {
			t.Fatalf("a parameter name injected a YAML line: %q", line)
		}
	}
	if got := unpack(t, out).extProc.GetProcessingMode().GetRequestBodyMode(); got != filterv3.ProcessingMode_STREAMED {
		t.Errorf("request body mode %v, want STREAMED", got)
	}
}
