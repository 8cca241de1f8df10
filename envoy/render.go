package envoy

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/apisessions/apisessions/config"
)

// Modes of the ext_proc filter (Options.Mode).
const (
	// ModeObservability copies traffic to apisessions without waiting ("send and go").
	ModeObservability = "observability"
	// ModeInline waits for apisessions' answers, so it can add the session header and
	// dynamic metadata.
	ModeInline = "inline"
)

// Defaults of Options.
const (
	// DefaultUpstream is where the protected API listens.
	DefaultUpstream = "127.0.0.1:8080"
	// DefaultProcessor is apisessions' gRPC listener (config server.grpc_listen ":50051").
	DefaultProcessor = "127.0.0.1:50051"
	// DefaultListenPort is Envoy's port for API clients.
	DefaultListenPort = 10000
	// DefaultCertFile and DefaultKeyFile are placeholders for the listener's certificate.
	DefaultCertFile = "/etc/envoy/tls/server.crt"
	DefaultKeyFile  = "/etc/envoy/tls/server.key"
)

// MetadataNamespace is the dynamic metadata namespace apisessions writes in inline mode.
const MetadataNamespace = "apisessions"

// Placeholders for the files Envoy needs when apisessions serves gRPC over TLS.
const (
	processorCAFile         = "/etc/envoy/tls/apisessions-ca.crt"
	processorClientCertFile = "/etc/envoy/tls/envoy-client.crt"
	processorClientKeyFile  = "/etc/envoy/tls/envoy-client.key"
)

// Options says where the pieces of the rendered deployment live. The zero value renders the
// defaults: observability mode, TLS on port 10000, the API on 127.0.0.1:8080 and apisessions
// on 127.0.0.1:50051.
type Options struct {
	// Mode is ModeObservability (the default when empty) or ModeInline.
	Mode string
	// Upstream is host:port of the protected API (default DefaultUpstream). An IP address
	// makes a STATIC cluster, a name a STRICT_DNS one.
	Upstream string
	// Processor is host:port of the apisessions gRPC listener (default DefaultProcessor). With
	// Replicas it may be a comma-separated list of host:port, one per replica; one DNS name
	// that resolves to every replica (a Kubernetes headless Service) is the usual form.
	Processor string
	// Replicas renders the apisessions cluster for several replicas: gRPC health checks,
	// outlier detection, hosts dropped as soon as DNS drops them, and the affinity below.
	Replicas bool
	// Affinity says what keeps one session's ext_proc streams on one replica, for speed only
	// (replicas share their state, so correctness never depends on it): AffinityAuto (the
	// default) derives it from the configuration's grouping keys, AffinityNone spreads streams
	// by load, or a comma-separated list of header:NAME, cookie:NAME and ip, tried in order.
	Affinity string
	// ListenPort is the port Envoy listens on for API clients (default DefaultListenPort).
	ListenPort int
	// Plaintext renders a listener without TLS. TLS is the default because JA3/JA4
	// fingerprints exist only for TLS that Envoy terminates itself; a plaintext listener
	// suits local trials.
	Plaintext bool
	// CertFile and KeyFile are the listener's certificate and key (defaults DefaultCertFile,
	// DefaultKeyFile); ignored with Plaintext.
	CertFile, KeyFile string
	// GRPCToken is the token of the configuration's server.grpc_token_file, which Envoy must
	// send to apisessions; required when that key is set. The bootstrap then holds a secret.
	GRPCToken string
}

// Render returns a complete Envoy bootstrap (YAML) that attaches apisessions, configured as
// cfg says, to the API o describes. A nil cfg means config.Default().
//
// What cfg decides:
//   - bodies: the request body is sent only when a parameter reads request.body, the response
//     body only for response.body. Observability mode sends them STREAMED (Envoy does not send
//     BUFFERED bodies there). Inline, the default stays NONE and allow_mode_override lets
//     apisessions ask for a body per request, BUFFERED_PARTIAL (never fails a request on
//     size), only when its content type is one a parameter can read;
//   - response headers are always sent: a configuration that read nothing from responses
//     could skip them, but every request record carries the response status;
//   - tls.ja3_header / tls.ja4_header: the request headers that carry the fingerprints;
//   - inline.session_header: the only header apisessions may set (mutation rules);
//     inline.dynamic_metadata: whether Envoy accepts the "apisessions" metadata namespace;
//   - attacks.metadata namespaces: forwarded to apisessions with every message;
//   - traffic.client_ip: how many proxies Envoy trusts in X-Forwarded-For;
//   - server.grpc_token_file: Envoy sends o.GRPCToken as "authorization: Bearer <token>"
//     gRPC metadata (grpc_service.initial_metadata) on every ext_proc stream;
//   - server.grpc_tls: a TLS transport socket to apisessions.
//
// The result passes Validate; an error says which option or key is unusable.
func Render(cfg *config.Config, o Options) ([]byte, error) {
	if cfg == nil {
		cfg = config.Default()
	}
	p, err := newPlan(cfg, o)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := bootstrapTemplate.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	if err := Validate(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("rendered bootstrap is invalid: %w", err)
	}
	return buf.Bytes(), nil
}

// Files holds the shipped configurations: the bootstraps observability.yaml, inline.yaml and
// observability-plaintext.yaml, and the Kubernetes resources envoy-gateway.yaml and
// istio-envoyfilter.yaml.
//
//go:embed observability.yaml inline.yaml observability-plaintext.yaml envoy-gateway.yaml istio-envoyfilter.yaml
var Files embed.FS

// Attributes requested from Envoy. The processor reads source.address, request.id and
// request.time; the rest are cheap context for records and debugging. Attributes that are
// final only after the response (request.duration, response.size) are useless at header time.
var (
	requestAttributes    = []string{"source.address", "source.port", "destination.port", "request.id", "request.time", "request.protocol", "connection.id", "xds.route_name"}
	requestAttributesTLS = []string{"connection.requested_server_name", "connection.tls_version"}
	responseAttributes   = []string{"response.code", "response.code_details", "upstream.address"}
)

// Body send modes of the ext_proc filter, as the YAML spells them.
const (
	bodyModeNone            = "NONE"
	bodyModeStreamed        = "STREAMED"
	bodyModeBufferedPartial = "BUFFERED_PARTIAL"
)

// Bounds on operator-supplied names, so a typo cannot produce a monster of a file.
const (
	maxDNSName       = 253
	maxDNSLabel      = 63
	maxFilePath      = 4096
	maxHeaderName    = 256
	maxNamespaceName = 256
	maxTrustedHops   = 64
)

var (
	// headerNamePattern is an HTTP token in lower case, as Envoy keeps header names.
	headerNamePattern        = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
	metadataNamespacePattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

	errAddressMissingPort = errors.New("missing port; write HOST:PORT, e.g. 127.0.0.1:8080")
	errAddressBadHost     = errors.New("host is neither an IP address nor a DNS name")
)

// plan is everything the template needs, decided and checked in Go.
type plan struct {
	Inline             bool
	ListenPort         int
	TLS                bool
	CertFile, KeyFile  string
	JA3, JA4           bool
	Fingerprints       []fingerprintHeader
	RemoveHeaders      []string
	SessionHeader      string
	SessionHeaderRegex string
	// ProtectionHeaders are the headers protection rules set (tag headers, block headers,
	// retry-after); with them SessionHeaderRegex allows these too.
	ProtectionHeaders []string
	// MutableHeaders is every header apisessions may set, when ProtectionHeaders is not empty.
	MutableHeaders     []string
	ReceiveMetadata    bool
	ForwardNamespaces  []string
	RequestBodyMode    string
	ResponseBodyMode   string
	BodyReasons        []string
	OverrideModes      []bodyModes
	ClientIPHeader     string
	TrustedHops        int
	RequestAttributes  []string
	ResponseAttributes []string
	Upstream           endpoint
	Processor          endpoint   // the first of Processors
	Processors         []endpoint // every address of the apisessions cluster
	ProcessorDNS       bool       // some address is a DNS name: a STRICT_DNS cluster
	ProcessorTLS       bool
	ProcessorMTLS      bool
	ProcessorCAFile    string
	ProcessorCertFile  string
	ProcessorKeyFile   string
	// GRPCAuthorization is the value of the authorization metadata Envoy sends; "" = none.
	GRPCAuthorization string
	// Replicas renders the apisessions cluster for a replica set.
	Replicas bool
	// AffinityMetadata and HashPolicies keep a session on one replica; empty = by load.
	AffinityMetadata []metadataEntry
	HashPolicies     []hashPolicy
	// MinEnvoy is the oldest Envoy release the bootstrap works with, and why.
	MinEnvoy string
}

// bodyModes is one allowed_override_modes entry: the body modes of a mode_override; the
// header and trailer modes are always SEND and SKIP, as apisessions spells them out.
type bodyModes struct {
	Request, Response string
}

// overrideModes lists the mode_override shapes apisessions sends (extproc.OverrideMode):
// a request body asked for at the request headers, a response body at the response headers
// (restating the request body mode already chosen).
func overrideModes(request, response bool) []bodyModes {
	var out []bodyModes
	if request {
		out = append(out, bodyModes{bodyModeBufferedPartial, bodyModeNone})
	}
	if response {
		out = append(out, bodyModes{bodyModeNone, bodyModeBufferedPartial})
	}
	if request && response {
		out = append(out, bodyModes{bodyModeBufferedPartial, bodyModeBufferedPartial})
	}
	return out
}

type fingerprintHeader struct {
	Name      string
	Formatter string
}

// endpoint is a checked host:port with the cluster type it needs.
type endpoint struct {
	Host string
	Port int
	DNS  bool
}

// newPlan decides and checks, step by step, everything the template needs for cfg and o.
func newPlan(cfg *config.Config, o Options) (*plan, error) {
	p := &plan{TLS: !o.Plaintext}
	switch o.Mode {
	case "", ModeObservability:
	case ModeInline:
		p.Inline = true
	default:
		return nil, fmt.Errorf("mode %q is unknown; use %s or %s", o.Mode, ModeObservability, ModeInline)
	}
	steps := []func() error{
		func() error { return p.listeners(o) },
		func() error { return p.headers(cfg) },
		func() error { return p.namespaces(cfg) },
		func() error { p.bodies(cfg); return nil },
		func() error { return p.clientIP(cfg) },
		func() error { return p.processor(cfg, o) },
		func() error { return p.replicas(cfg, o) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	p.RequestAttributes = append([]string(nil), requestAttributes...)
	if p.TLS {
		p.RequestAttributes = append(p.RequestAttributes, requestAttributesTLS...)
	}
	p.ResponseAttributes = responseAttributes
	p.MinEnvoy = p.minEnvoy()
	return p, nil
}

// minEnvoy names the oldest Envoy release that has everything the bootstrap uses.
func (p *plan) minEnvoy() string {
	var why []string
	if p.JA4 {
		why = append(why, "JA4 fingerprints")
	}
	if len(p.HashPolicies) > 0 {
		why = append(why, "hash_policy in the ring hash load balancer, for session affinity")
	}
	if len(why) == 0 {
		return "1.31"
	}
	return "1.35 (" + strings.Join(why, "; ") + ")"
}

// listeners checks the upstream and processor addresses, the listen port and, with TLS, the
// certificate files.
func (p *plan) listeners(o Options) error {
	var err error
	if p.Upstream, err = parseEndpoint(orDefault(o.Upstream, DefaultUpstream)); err != nil {
		return fmt.Errorf("upstream %q: %w", o.Upstream, err)
	}
	if err := p.parseProcessors(o.Processor, o.Replicas); err != nil {
		return err
	}
	p.ListenPort = o.ListenPort
	if p.ListenPort == 0 {
		p.ListenPort = DefaultListenPort
	}
	if p.ListenPort < 1 || p.ListenPort > 65535 {
		return fmt.Errorf("listen port %d is out of range; use 1 to 65535", o.ListenPort)
	}
	if p.TLS {
		if p.CertFile, err = checkPath("certificate file", orDefault(o.CertFile, DefaultCertFile)); err != nil {
			return err
		}
		if p.KeyFile, err = checkPath("key file", orDefault(o.KeyFile, DefaultKeyFile)); err != nil {
			return err
		}
	}
	return nil
}

// headers decides the fingerprint headers Envoy sets, the headers it removes from clients and,
// inline, the session header and dynamic metadata.
func (p *plan) headers(cfg *config.Config) error {
	ja3, err := headerName("tls.ja3_header", cfg.TLS.JA3Header)
	if err != nil {
		return err
	}
	ja4, err := headerName("tls.ja4_header", cfg.TLS.JA4Header)
	if err != nil {
		return err
	}
	// Client-sent copies of the fingerprint headers are removed in every listener, plaintext
	// included, so apisessions never takes a forged fingerprint for Envoy's.
	for _, h := range []struct{ name, formatter string }{
		{ja3, "%TLS_JA3_FINGERPRINT%"},
		{ja4, "%TLS_JA4_FINGERPRINT%"},
	} {
		if h.name == "" {
			continue
		}
		p.RemoveHeaders = appendUnique(p.RemoveHeaders, h.name)
		if p.TLS {
			p.Fingerprints = append(p.Fingerprints, fingerprintHeader{Name: h.name, Formatter: h.formatter})
		}
	}
	p.JA3 = p.TLS && ja3 != ""
	p.JA4 = p.TLS && ja4 != ""
	if !p.Inline {
		return nil
	}
	if p.SessionHeader, err = headerName("inline.session_header", cfg.Inline.SessionHeader); err != nil {
		return err
	}
	if p.SessionHeader != "" {
		if p.SessionHeader == ja3 || p.SessionHeader == ja4 {
			return fmt.Errorf("inline.session_header %q is also a fingerprint header; use a name of its own", p.SessionHeader)
		}
		p.SessionHeaderRegex = "^" + regexp.QuoteMeta(p.SessionHeader) + "$"
		// Removed before ext_proc so that, when apisessions does not answer (fail open),
		// the API never sees a session id the client made up.
		p.RemoveHeaders = appendUnique(p.RemoveHeaders, p.SessionHeader)
	}
	if err := p.protectionHeaders(cfg, ja3, ja4); err != nil {
		return err
	}
	p.ReceiveMetadata = cfg.Inline.DynamicMetadata
	return nil
}

// protectionHeaders lets apisessions set the headers of protection rules: Envoy applies
// mutation_rules to immediate responses too, so a block's headers and a rate limit's
// Retry-After would be dropped otherwise. Tag headers are removed before ext_proc, as the
// session header is, so that no client forges a verdict when apisessions does not answer.
func (p *plan) protectionHeaders(cfg *config.Config, ja3, ja4 string) error {
	for i, r := range cfg.Protection.Rules {
		switch r.Action {
		case config.ActionTag:
			h, err := headerName(fmt.Sprintf("protection.rules[%d].tag.header", i), r.Tag.Header)
			if err != nil {
				return err
			}
			if h == "" {
				continue
			}
			if h == ja3 || h == ja4 || h == p.SessionHeader {
				return fmt.Errorf("protection.rules[%d].tag.header %q is also a fingerprint or the session header; use a name of its own", i, h)
			}
			p.ProtectionHeaders = appendUnique(p.ProtectionHeaders, h)
			p.RemoveHeaders = appendUnique(p.RemoveHeaders, h)
		case config.ActionBlock:
			for _, k := range slices.Sorted(maps.Keys(r.Block.Headers)) {
				p.ProtectionHeaders = appendUnique(p.ProtectionHeaders, strings.ToLower(k))
			}
		case config.ActionRateLimit:
			p.ProtectionHeaders = appendUnique(p.ProtectionHeaders, "retry-after")
		}
	}
	if len(p.ProtectionHeaders) == 0 {
		return nil
	}
	if p.SessionHeader != "" {
		p.MutableHeaders = append(p.MutableHeaders, p.SessionHeader)
	}
	p.MutableHeaders = append(p.MutableHeaders, p.ProtectionHeaders...)
	quoted := make([]string, len(p.MutableHeaders))
	for i, h := range p.MutableHeaders {
		quoted[i] = regexp.QuoteMeta(h)
	}
	p.SessionHeaderRegex = "^(" + strings.Join(quoted, "|") + ")$"
	return nil
}

// namespaces lists the dynamic metadata namespaces whose attack verdicts Envoy forwards.
func (p *plan) namespaces(cfg *config.Config) error {
	for i, m := range cfg.Attacks.Metadata {
		ns := m.Namespace
		if ns == "" || len(ns) > maxNamespaceName || !metadataNamespacePattern.MatchString(ns) {
			return fmt.Errorf("attacks.metadata[%d].namespace %q is not a metadata namespace name; use letters, digits and . _ : -", i, ns)
		}
		p.ForwardNamespaces = appendUnique(p.ForwardNamespaces, ns)
	}
	return nil
}

// bodies decides the body modes from the parameters that read bodies.
func (p *plan) bodies(cfg *config.Config) {
	p.RequestBodyMode, p.ResponseBodyMode = bodyModeNone, bodyModeNone
	var needRequest, needResponse bool
	for _, prm := range cfg.Parameters {
		switch prm.In {
		case config.InRequestBody:
			needRequest = true
			p.BodyReasons = appendUnique(p.BodyReasons, fmt.Sprintf("parameter %q reads request.body", prm.Name))
		case config.InResponseBody:
			needResponse = true
			p.BodyReasons = appendUnique(p.BodyReasons, fmt.Sprintf("parameter %q reads response.body", prm.Name))
		}
	}
	if p.Inline {
		// Inline, bodies stay NONE by default and apisessions asks for one per request with a
		// mode_override when the content type is one a parameter can read: a body that cannot
		// hold a value (an image, HTML) is then never held back by Envoy. Envoy accepts an
		// override only if it equals one of these shapes.
		p.OverrideModes = overrideModes(needRequest, needResponse)
		return
	}
	// Observability mode has no mode override (answers are ignored) and does not send
	// BUFFERED bodies.
	if needRequest {
		p.RequestBodyMode = bodyModeStreamed
	}
	if needResponse {
		p.ResponseBodyMode = bodyModeStreamed
	}
}

// clientIP decides where Envoy takes the client address from.
func (p *plan) clientIP(cfg *config.Config) error {
	switch from := strings.ToLower(strings.TrimSpace(cfg.Traffic.ClientIP.From)); from {
	case "", "source":
		// Envoy is the edge: the client is the TCP peer and X-Forwarded-For is not trusted.
		return nil
	default:
		var err error
		if p.ClientIPHeader, err = headerName("traffic.client_ip.from", from); err != nil {
			return err
		}
		if cfg.Traffic.ClientIP.TrustedHops < 0 || cfg.Traffic.ClientIP.TrustedHops > maxTrustedHops {
			return fmt.Errorf("traffic.client_ip.trusted_hops %d is out of range; use 0 to %d", cfg.Traffic.ClientIP.TrustedHops, maxTrustedHops)
		}
		p.TrustedHops = cfg.Traffic.ClientIP.TrustedHops
		return nil
	}
}

// processor decides how Envoy reaches apisessions: the gRPC token it sends and TLS or mTLS.
func (p *plan) processor(cfg *config.Config, o Options) error {
	var err error
	if p.GRPCAuthorization, err = grpcAuthorization(cfg, o.GRPCToken); err != nil {
		return err
	}
	if cfg.Server.GRPCTLS.CertFile != "" {
		p.ProcessorTLS = true
		p.ProcessorCAFile = processorCAFile
		if cfg.Server.GRPCTLS.ClientCAFile != "" {
			p.ProcessorMTLS = true
			p.ProcessorCertFile, p.ProcessorKeyFile = processorClientCertFile, processorClientKeyFile
		}
	}
	return p.checkProcessorTLS()
}

// grpcAuthorization returns the metadata value that carries token, or "" without one. A
// configuration that asks for a token must be given it: a bootstrap without it would have
// every stream refused. The token is never shown in errors.
func grpcAuthorization(cfg *config.Config, token string) (string, error) {
	if token == "" {
		if cfg.Server.GRPCTokenFile != "" {
			return "", fmt.Errorf("server.grpc_token_file is set but no token was given; pass the file's token (apisessions envoy-config reads it from %s)", cfg.Server.GRPCTokenFile)
		}
		return "", nil
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", errors.New("the gRPC token has spaces or characters other than visible ASCII; it cannot travel in a header")
	}
	return "Bearer " + token, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// headerName lower-cases a configured header name and checks it is an HTTP token; "" stays ""
// (the feature is off).
func headerName(key, name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", nil
	}
	if len(name) > maxHeaderName || !headerNamePattern.MatchString(name) {
		return "", fmt.Errorf("%s %q is not a valid HTTP header name; use letters, digits and - only", key, name)
	}
	return name, nil
}

func checkPath(what, path string) (string, error) {
	if len(path) > maxFilePath || strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%s %q contains control characters or is too long", what, path)
	}
	return path, nil
}

// parseEndpoint checks host:port. Hosts are IP addresses (a STATIC cluster) or DNS names
// (STRICT_DNS); IPv6 addresses are written in brackets, "[::1]:50051".
func parseEndpoint(hostport string) (endpoint, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		if !strings.Contains(hostport, ":") {
			return endpoint{}, errAddressMissingPort
		}
		return endpoint{}, fmt.Errorf("not HOST:PORT (%w); write IPv6 addresses in brackets, [::1]:8080", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return endpoint{}, fmt.Errorf("port %q is not a number from 1 to 65535", portStr)
	}
	if host == "" {
		return endpoint{}, errors.New("host is empty; name the host, e.g. 127.0.0.1:" + portStr)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return endpoint{}, errors.New("IPv6 zones are not supported; use an address without %zone")
		}
		return endpoint{Host: a.String(), Port: port}, nil
	}
	if !validDNSName(host) {
		return endpoint{}, errAddressBadHost
	}
	return endpoint{Host: strings.ToLower(strings.TrimSuffix(host, ".")), Port: port, DNS: true}, nil
}

// validDNSName accepts RFC 1123 host names (letters, digits, hyphens; dot-separated labels),
// with an optional trailing dot and underscores, which service discovery names use.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > maxDNSName {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > maxDNSLabel || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// yamlString quotes s as a double-quoted YAML scalar (JSON strings are valid YAML).
func yamlString(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func yamlList(list []string) (string, error) {
	parts := make([]string, len(list))
	for i, s := range list {
		q, err := yamlString(s)
		if err != nil {
			return "", err
		}
		parts[i] = q
	}
	return "[" + strings.Join(parts, ", ") + "]", nil
}

var bootstrapTemplate = template.Must(template.New("bootstrap").
	Funcs(template.FuncMap{"q": yamlString, "list": yamlList}).
	Parse(bootstrapText))
