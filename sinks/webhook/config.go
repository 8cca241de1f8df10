package webhook

import (
	"net/url"
	"slices"
	"strings"

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
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		check.Errorf("url", "is missing; write the endpoint that receives the batches, e.g. https://siem.example.com/ingest")
	case err == nil && u.User != nil:
		// Never echo it: the URL holds a credential.
		check.Errorf("url", "holds a user name or password; send credentials in headers instead, e.g. Authorization: \"Bearer ${SIEM_TOKEN}\"")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		check.Errorf("url", "%s is not an http or https URL; write e.g. https://siem.example.com/ingest", check.Show("url", c.URL))
	}
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key := "headers." + name
		switch {
		case !config.ValidToken(name):
			check.Errorf(key, "%q is not a valid header name; use letters, digits and - (e.g. Authorization)", name)
		case slices.Contains(reservedHeaders, strings.ToLower(name)):
			check.Errorf(key, "is set by the webhook sink itself; remove it")
		}
		if strings.ContainsAny(c.Headers[name], "\r\n\x00") {
			// Never echo the value: it may be a credential.
			check.Errorf(key, "the value holds a line break or NUL, which cannot be sent in a header; remove it")
		}
	}
	if c.TLS.IsSet() && err == nil && u.Scheme == "http" {
		check.Errorf("tls", "applies to https URLs only; use an https URL or remove tls")
	}
	c.TLS.Validate(check, "tls")
}
