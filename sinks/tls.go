package sinks

import "github.com/apisessions/apisessions/config"

// TLS is the client side of TLS to a webhook or Kafka: the tls key of their options, built
// into a *tls.Config by TLSConfig.
type TLS struct {
	// Enabled turns TLS on for Kafka (any other key implies it); a webhook uses TLS when its
	// URL is https.
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the server with these PEM certificates instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate: for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IsSet reports whether any TLS key is set.
func (t TLS) IsSet() bool { return t != TLS{} }

// Validate reports the problems of t, written under key ("tls") of a sink, to c. Files are
// not opened: a configuration may be checked on another machine than the one that runs it.
func (t TLS) Validate(c *config.SinkCheck, key string) {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		c.Errorf(key+".key_file", "is empty while cert_file is set; set both or neither")
	case t.CertFile == "" && t.KeyFile != "":
		c.Errorf(key+".cert_file", "is empty while key_file is set; set both or neither")
	}
}
