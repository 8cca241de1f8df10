package webhook

import (
	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks"
)

// Type is the sink type as configuration files name it.
const Type = "webhook"

// Config is the keys only a webhook sink has.
type Config struct {
	// URL is the http or https endpoint that receives the batches.
	URL string `yaml:"url"`
	// Headers are sent with every request; values may be credentials and are never shown.
	Headers map[string]string `yaml:"headers"`
	// Gzip compresses request bodies (default true).
	Gzip bool `yaml:"gzip"`
	// TLS applies to https URLs.
	TLS sinks.TLS `yaml:"tls"`
}

// DefaultConfig returns the configuration of a webhook sink whose file leaves out every key:
// compressed, and without a URL, which has no default.
func DefaultConfig() *Config {
	return &Config{Gzip: true}
}

// reservedHeaders are set by the sink itself.
var reservedHeaders = []string{"content-type", "content-encoding", "content-length", "host", "transfer-encoding"}

// Validate reports a missing or unusable URL, header names and values that cannot be sent,
// and TLS keys that do not fit together or with the URL. It never echoes a header value or
// a URL that holds a credential.
func (c *Config) Validate(check *config.SinkCheck) {
	u := sinks.CheckHTTPURL(check, "url", c.URL, "the endpoint that receives the batches, e.g. https://siem.example.com/ingest",
		"https://siem.example.com/ingest", `Authorization: "Bearer ${SIEM_TOKEN}"`)
	sinks.CheckHeaders(check, c.Headers, reservedHeaders, Type, "Authorization")
	if c.TLS.IsSet() && u != nil && u.Scheme == "http" {
		check.Errorf("tls", "applies to https URLs only; use an https URL or remove tls")
	}
	c.TLS.Validate(check, "tls")
}
