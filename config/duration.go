package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// String returns d in Go syntax, e.g. "168h0m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d in Go syntax, so that JSON and YAML dumps read like the file.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads Go duration syntax ("30s", "15m", "168h").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration; use Go syntax such as 30s, 15m or 168h", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a scalar in Go duration syntax, for code that decodes YAML into the
// schema types directly; Load and Parse use their own decoder with line-numbered messages.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 30s, 15m or 168h", n.Line)
	}
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// MarshalYAML writes d in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
