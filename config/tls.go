package config

// ClientTLS is the client side of TLS to a server apisessions connects to (a webhook, Kafka,
// Redis): the tls key of their settings. The program builds it into a *tls.Config
// (internal/tlsclient); this package only checks it.
type ClientTLS struct {
	// Enabled turns TLS on where the address alone does not say (Kafka, Redis); any other key
	// implies it. A webhook uses TLS when its URL is https.
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the server with these PEM certificates instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry when it is not the host of
	// the address (e.g. an address given as an IP).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate: for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IsSet reports whether any TLS key is set.
func (t ClientTLS) IsSet() bool { return t != ClientTLS{} }

// Validate reports the problems of t, written under key ("tls") of a sink, to c. Files are
// not opened: a configuration may be checked on another machine than the one that runs it.
func (t ClientTLS) Validate(c *SinkCheck, key string) {
	t.check(key, c.Errorf)
}

// check reports the problems of t written at keyPath through report.
func (t ClientTLS) check(keyPath string, report func(keyPath, format string, args ...any)) {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		report(keyPath+".key_file", "is empty while cert_file is set; set both or neither")
	case t.CertFile == "" && t.KeyFile != "":
		report(keyPath+".cert_file", "is empty while key_file is set; set both or neither")
	}
}
