package envoy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
)

// Values of Options.Affinity besides an explicit list.
const (
	// AffinityAuto derives the affinity keys from the configuration's grouping keys.
	AffinityAuto = "auto"
	// AffinityNone spreads streams over the replicas by load only.
	AffinityNone = "none"
)

// Affinity sources as written in an explicit Options.Affinity list.
const (
	affinityHeader = "header:"
	affinityCookie = "cookie:"
	affinityIP     = "ip"
)

// Names of the gRPC metadata that carry affinity keys to the processor cluster's load
// balancer. They travel on the ext_proc side stream only, never to the protected API.
const (
	affinityMetadataPrefix = "x-apisessions-affinity-"
	affinityCookieMetadata = "cookie"
)

// healthServiceName is the gRPC health service apisessions reports for ext_proc
// (extproc.Server.SetServing); it is NOT_SERVING while starting and draining.
const healthServiceName = "envoy.service.ext_proc.v3.ExternalProcessor"

// maxProcessors bounds the addresses of a replica list; a set larger than this belongs
// behind one DNS name.
const maxProcessors = 64

// cookieNamePattern is an RFC 6265 cookie name (an HTTP token).
var cookieNamePattern = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)

// metadataEntry is one initial_metadata entry of the ext_proc gRPC service. Value is an Envoy
// header formatter, evaluated against the HTTP request the stream is for.
type metadataEntry struct {
	Key, Value, Comment string
}

// hashPolicy is one entry of the ring hash load balancer's hash_policy: a side-stream header
// or a cookie in the side stream's cookie metadata.
type hashPolicy struct {
	Header, Cookie string
}

// affinitySource is one request-visible value that keeps a session on one replica.
type affinitySource struct {
	kind string // affinityHeader, affinityCookie or affinityIP
	name string // header or cookie name; "" for ip
}

// replicas decides the processor cluster for a replica set: its addresses, and the hash
// policy and metadata that keep a session's streams on one replica where the configuration
// names request-visible keys.
func (p *plan) replicas(cfg *config.Config, o Options) error {
	p.Replicas = o.Replicas
	if !o.Replicas {
		if o.Affinity != "" && o.Affinity != AffinityAuto && o.Affinity != AffinityNone {
			return errors.New("affinity is for a replica set; add --replicas")
		}
		return nil
	}
	sources, err := affinitySources(cfg, o.Affinity)
	if err != nil {
		return err
	}
	p.affinity(sources)
	return nil
}

// affinitySources parses an explicit list or derives the sources from cfg.
func affinitySources(cfg *config.Config, spec string) ([]affinitySource, error) {
	switch spec {
	case "", AffinityAuto:
		return autoAffinity(cfg), nil
	case AffinityNone:
		return nil, nil
	}
	var out []affinitySource
	for item := range strings.SplitSeq(spec, ",") {
		s, err := parseAffinity(strings.TrimSpace(item))
		if err != nil {
			return nil, fmt.Errorf("affinity %q: %w", item, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func parseAffinity(item string) (affinitySource, error) {
	switch {
	case item == affinityIP:
		return affinitySource{kind: affinityIP}, nil
	case strings.HasPrefix(item, affinityHeader):
		name, err := headerName("header", strings.TrimPrefix(item, affinityHeader))
		if err != nil || name == "" {
			return affinitySource{}, errors.New("not a header name; write header:NAME with letters, digits and -")
		}
		return affinitySource{kind: affinityHeader, name: name}, nil
	case strings.HasPrefix(item, affinityCookie):
		name := strings.TrimPrefix(item, affinityCookie)
		if len(name) > maxHeaderName || !cookieNamePattern.MatchString(name) {
			return affinitySource{}, errors.New("not a cookie name; write cookie:NAME")
		}
		return affinitySource{kind: affinityCookie, name: name}, nil
	}
	return affinitySource{}, fmt.Errorf("unknown source; use %s, %s, header:NAME or cookie:NAME, or a comma-separated list of them", AffinityAuto, AffinityNone)
}

// autoAffinity lists, in the order apisessions tries them when grouping, the grouping keys
// Envoy can read before the request goes on: grouping parameters in request headers and
// cookies, the built-in identifiers, then the client address when the fallback key uses it.
// Keys Envoy cannot read (query, body, path, response values) are skipped: a session keyed by
// one of them is kept together by a later source, or spread by load.
func autoAffinity(cfg *config.Config) []affinitySource {
	var out []affinitySource
	add := func(s affinitySource) {
		if s.name != "" || s.kind == affinityIP {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	for _, prm := range cfg.Parameters {
		if !prm.Group {
			continue
		}
		switch prm.In {
		case config.InRequestHeader:
			if name, err := headerName("parameter", prm.Key); err == nil {
				add(affinitySource{kind: affinityHeader, name: name})
			}
		case config.InRequestCookie:
			if cookieNamePattern.MatchString(prm.Key) && len(prm.Key) <= maxHeaderName {
				add(affinitySource{kind: affinityCookie, name: prm.Key})
			}
		}
	}
	if cfg.Sessions.BuiltinKeys {
		for _, c := range sessions.BuiltinCookies {
			add(affinitySource{kind: affinityCookie, name: c})
		}
		for _, h := range sessions.BuiltinHeaders {
			add(affinitySource{kind: affinityHeader, name: h})
		}
		add(affinitySource{kind: affinityHeader, name: "authorization"})
	}
	if slices.Contains(cfg.Sessions.Fallback, config.FallbackIP) {
		add(affinitySource{kind: affinityIP})
	}
	return out
}

// affinity turns the sources into side-stream metadata and the matching hash policies, in
// the same order. Envoy hashes the first source present on a request (terminal policies);
// a request with none of them goes to a replica chosen by load.
func (p *plan) affinity(sources []affinitySource) {
	cookies, headers := false, 0
	for _, s := range sources {
		switch s.kind {
		case affinityHeader:
			headers++
			key := affinityMetadataPrefix + strconv.Itoa(headers)
			p.AffinityMetadata = append(p.AffinityMetadata, metadataEntry{Key: key, Value: "%REQ(" + s.name + ")%", Comment: "request header " + s.name})
			p.HashPolicies = append(p.HashPolicies, hashPolicy{Header: key})
		case affinityCookie:
			if !cookies {
				cookies = true
				p.AffinityMetadata = append(p.AffinityMetadata, metadataEntry{Key: affinityCookieMetadata, Value: "%REQ(cookie)%", Comment: "request cookies, for the cookie policies"})
			}
			p.HashPolicies = append(p.HashPolicies, hashPolicy{Cookie: s.name})
		case affinityIP:
			key := affinityMetadataPrefix + affinityIP
			p.AffinityMetadata = append(p.AffinityMetadata, metadataEntry{Key: key, Value: p.clientAddressFormatter(), Comment: "client address"})
			p.HashPolicies = append(p.HashPolicies, hashPolicy{Header: key})
		}
	}
}

// clientAddressFormatter is the Envoy value that names the client as apisessions sees it:
// Envoy's own idea of the remote address (the TCP peer, or X-Forwarded-For counted with
// xff_num_trusted_hops), or the whole header apisessions reads the client from.
func (p *plan) clientAddressFormatter() string {
	if p.ClientIPHeader != "" && p.ClientIPHeader != "x-forwarded-for" {
		return "%REQ(" + p.ClientIPHeader + ")%"
	}
	return "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
}

// HealthService is the gRPC health service Envoy checks on each replica.
func (p *plan) HealthService() string { return healthServiceName }

// parseProcessors checks the processor address: one HOST:PORT, or with a replica set a
// comma-separated list of them. TLS with several names has no single name to verify.
func (p *plan) parseProcessors(spec string, replicas bool) error {
	items := strings.Split(orDefault(spec, DefaultProcessor), ",")
	if len(items) > 1 && !replicas {
		return fmt.Errorf("processor %q lists several addresses; add --replicas for a replica set", spec)
	}
	if len(items) > maxProcessors {
		return fmt.Errorf("processor lists %d addresses; at most %d, or give one DNS name that resolves to every replica", len(items), maxProcessors)
	}
	for _, item := range items {
		ep, err := parseEndpoint(strings.TrimSpace(item))
		if err != nil {
			return fmt.Errorf("processor %q: %w", item, err)
		}
		if slices.Contains(p.Processors, ep) {
			return fmt.Errorf("processor %q is listed twice", item)
		}
		p.Processors = append(p.Processors, ep)
		p.ProcessorDNS = p.ProcessorDNS || ep.DNS
	}
	p.Processor = p.Processors[0]
	return nil
}

// checkProcessorTLS refuses TLS to several different host names: Envoy would check every
// replica's certificate against the first name only.
func (p *plan) checkProcessorTLS() error {
	if !p.ProcessorTLS {
		return nil
	}
	for _, ep := range p.Processors[1:] {
		if ep.Host != p.Processor.Host {
			return errors.New("server.grpc_tls with several processor host names: give one DNS name that resolves to every replica (its certificate names it), e.g. a Kubernetes headless Service")
		}
	}
	return nil
}
