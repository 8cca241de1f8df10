package store

import (
	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks"
)

// Type is the sink type as configuration files name it. It is config.DefaultSinkType: a file
// without a sinks key gets one store sink.
const Type = "store"

// Drivers a store sink may name.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config is the keys only a store sink has.
type Config struct {
	// Path is the directory of the database; empty means server.data_dir.
	Path string `yaml:"path"`
}

// DefaultConfig returns the configuration of a store sink whose file leaves out every key:
// the database in server.data_dir.
func DefaultConfig() *Config {
	return &Config{}
}

// Validate reports a path that cannot be a directory, and a second store sink: the explore
// API and UI read one store.
func (c *Config) Validate(check *config.SinkCheck) {
	if c.Path == "-" {
		check.Errorf("path", "\"-\" is not a directory; give the store's directory, or leave path out to use server.data_dir")
	}
	if other, taken := check.Claim("the store"); taken {
		check.Errorf("type", "%s is already a store; keep one store sink: the explore API and UI read one store", other)
	}
}

// Factory opens store sinks from their Config: the database in path, else in the data
// directory (sinks.Settings.DataDir), keeping parts for sinks.Settings.Retention. The sinks
// pipeline closes the store like any sink; the explore API then answers 503.
var Factory = sinks.FactoryOf(Type, DefaultConfig, func(_ config.Sink, c *Config, s sinks.Settings) (*Store, error) {
	dir := c.Path
	if dir == "" {
		dir = s.DataDir
	}
	return Open(Options{Dir: dir, Retention: s.Retention, Logger: s.Logger, IdleTimeout: s.IdleTimeout, DayBoundary: s.DayBoundary})
})
