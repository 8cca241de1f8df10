package otlp

import (
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
	u := sinks.CheckHTTPURL(check, "endpoint", c.Endpoint, "the receiver's URL, e.g. https://otel-collector:4317",
		"https://otel-collector:4317 (http:// for plaintext)", `authorization: "Bearer ${OTLP_TOKEN}"`)
	if u != nil && c.Protocol == ProtocolGRPC && u.Path != "" && u.Path != "/" {
		check.Errorf("endpoint", "a gRPC endpoint has no path; write the scheme, host and port only, e.g. https://otel-collector:4317")
	}
	if c.Protocol != ProtocolGRPC && c.Protocol != ProtocolHTTP {
		check.Errorf("protocol", "%q is not an OTLP protocol; use grpc or http", c.Protocol)
	}
	if c.Compression != "gzip" && c.Compression != "none" {
		check.Errorf("compression", "%q is not a compression; use gzip or none", c.Compression)
	}
	sinks.CheckHeaders(check, c.Headers, nil, Type, "authorization")
	if c.ServiceName == "" {
		check.Errorf("service_name", "is empty; name the service the records come from, e.g. apisessions")
	}
	if c.TLS.IsSet() && u != nil && u.Scheme == "http" {
		check.Errorf("tls", "applies to https endpoints only; use an https endpoint or remove tls")
	}
	c.TLS.Validate(check, "tls")
}
