package jsonl

import "github.com/apisessions/apisessions/config"

// Type is the sink type as configuration files name it.
const Type = "jsonl"

// Rotation defaults, for a file that leaves the keys out.
const (
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 5
)

// Config is the keys only a jsonl sink has.
type Config struct {
	// Path is the file written, or StdoutPath for standard output. It has no default.
	Path string `yaml:"path"`
	// MaxSizeMB is the size at which the file rotates.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files are kept, as path.1 (newest) … path.N.
	MaxBackups int `yaml:"max_backups"`
}

// DefaultConfig returns the configuration of a jsonl sink whose file leaves out every key.
func DefaultConfig() *Config {
	return &Config{MaxSizeMB: DefaultMaxSizeMB, MaxBackups: DefaultMaxBackups}
}

// Validate reports a missing path, a file that another sink writes too, and rotation limits
// out of range.
func (c *Config) Validate(check *config.SinkCheck) {
	switch {
	case c.Path == "":
		check.Errorf("path", "is missing; write \"-\" for standard output or a file path")
	case c.Path != StdoutPath:
		if other, taken := check.Claim("file " + c.Path); taken {
			check.Errorf("path", "is also the file of %s; give each sink its own file", other)
		}
	}
	if c.MaxSizeMB < 1 {
		check.Errorf("max_size_mb", "%d is too small; use at least 1 (default %d)", c.MaxSizeMB, DefaultMaxSizeMB)
	}
	if c.MaxBackups < 0 {
		check.Errorf("max_backups", "%d is negative; use 0 (keep none) or more (default %d)", c.MaxBackups, DefaultMaxBackups)
	}
}
