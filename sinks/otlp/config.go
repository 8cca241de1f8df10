package otlp

import (
	"net/url"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks"
)

// Type is the sink type as configuration files name it.
const Type = "otlp"

// Protocols of OTLP this sink speaks.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Config is the keys only an otlp sink has.
type Config struct {
	// Endpoint is the receiver's URL: https://host:4317 (gRPC) or https://host:4318 (HTTP;
	// /v1/logs is added when the URL has no path). http:// sends in plaintext.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (default) or http (protobuf over HTTP).
	Protocol string `yaml:"protocol"`
	// Headers are sent with every export (gRPC metadata or HTTP headers); values may be
	// credentials and are never shown.
	Headers map[string]string `yaml:"headers"`
	// Compression is gzip (default) or none.
	Compression string `yaml:"compression"`
	// TLS applies to https endpoints.
	TLS sinks.TLS `yaml:"tls"`
	// ServiceName is the resource's service.name (default apisessions).
	ServiceName string `yaml:"service_name"`
	// ResourceAttributes are added to the resource (deployment.environment, …).
	ResourceAttributes map[string]string `yaml:"resource_attributes"`
}

// DefaultConfig returns the configuration of an otlp sink whose file leaves out every key.
func DefaultConfig() *Config {
	return &Config{Protocol: ProtocolGRPC, Compression: "gzip", ServiceName: "apisessions"}
}

// Validate reports a missing or unusable endpoint, an unknown protocol or compression, header
// names and values that cannot be sent, and TLS keys that do not fit. It never echoes a header
// value or an endpoint that holds a credential.
func (c *Config) Validate(check *config.SinkCheck) {
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "":
		check.Errorf("endpoint", "is missing; write the receiver's URL, e.g. https://otel-collector:4317")
	case err == nil && u.User != nil:
		check.Errorf("endpoint", "holds a user name or password; send credentials in headers instead, e.g. authorization: \"Bearer ${OTLP_TOKEN}\"")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		check.Errorf("endpoint", "%s is not an http or https URL; write e.g. https://otel-collector:4317 (http:// for plaintext)", check.Show("endpoint", c.Endpoint))
	case c.Protocol == ProtocolGRPC && u.Path != "" && u.Path != "/":
		check.Errorf("endpoint", "a gRPC endpoint has no path; write the scheme, host and port only, e.g. https://otel-collector:4317")
	}
	if c.Protocol != ProtocolGRPC && c.Protocol != ProtocolHTTP {
		check.Errorf("protocol", "%q is not an OTLP protocol; use grpc or http", c.Protocol)
	}
	if c.Compression != "gzip" && c.Compression != "none" {
		check.Errorf("compression", "%q is not a compression; use gzip or none", c.Compression)
	}
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key := "headers." + name
		if !config.ValidToken(name) {
			check.Errorf(key, "%q is not a valid header name; use letters, digits and - (e.g. authorization)", name)
		}
		if strings.ContainsAny(c.Headers[name], "\r\n\x00") {
			check.Errorf(key, "the value holds a line break or NUL, which cannot be sent in a header; remove it")
		}
	}
	if c.ServiceName == "" {
		check.Errorf("service_name", "is empty; name the service the records come from, e.g. apisessions")
	}
	if c.TLS.IsSet() && err == nil && u.Scheme == "http" {
		check.Errorf("tls", "applies to https endpoints only; use an https endpoint or remove tls")
	}
	c.TLS.Validate(check, "tls")
}
