package store

import (
	"net/url"
	"strings"

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
	// Driver is the database engine: sqlite (default, a file in path) or postgres (dsn).
	Driver string `yaml:"driver"`
	// Path is the directory of a SQLite database; empty means server.data_dir.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (driver postgres), ${ENV} expanded when the file
	// is loaded; TLS is chosen with sslmode.
	DSN string `yaml:"dsn"`
}

// DefaultConfig returns the configuration of a store sink whose file leaves out every key:
// the database in server.data_dir.
func DefaultConfig() *Config {
	return &Config{}
}

// Validate reports a path that cannot be a directory, and a second store sink: the explore
// API and UI read one store.
func (c *Config) Validate(check *config.SinkCheck) {
	switch c.Driver {
	case "", DriverSQLite:
		if c.DSN != "" {
			check.Errorf("dsn", "is only for driver postgres; remove dsn, or set driver: postgres")
		}
	case DriverPostgres:
		c.validatePostgres(check)
	default:
		check.Errorf("driver", "%s is not a store driver; use sqlite (a file in path) or postgres (a server at dsn)", check.Show("driver", c.Driver))
	}
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
	if dir == "" && c.Driver != DriverPostgres {
		dir = s.DataDir
	}
	return Open(Options{Driver: c.Driver, DSN: c.DSN, Dir: dir, Retention: s.Retention, Logger: s.Logger, IdleTimeout: s.IdleTimeout, DayBoundary: s.DayBoundary,
		Risk: s.Risk})
})

// validatePostgres checks the keys of a PostgreSQL store. The DSN is never shown: it may hold
// a password.
func (c *Config) validatePostgres(check *config.SinkCheck) {
	if c.Path != "" {
		check.Errorf("path", "is only for driver sqlite; remove path, the database is the one dsn names")
	}
	if c.DSN == "" {
		check.Errorf("dsn", "is empty; driver postgres needs dsn: postgres://user:${PGPASSWORD}@host:5432/db?sslmode=verify-full")
		return
	}
	if !strings.HasPrefix(c.DSN, "postgres://") && !strings.HasPrefix(c.DSN, "postgresql://") {
		check.Errorf("dsn", "does not begin with postgres://; give a URL such as postgres://user:${PGPASSWORD}@host:5432/db?sslmode=verify-full")
		return
	}
	if _, err := url.Parse(c.DSN); err != nil {
		check.Errorf("dsn", "is not a URL (%s); percent-encode special characters in the user and password", RedactDSN(c.DSN))
	}
}
