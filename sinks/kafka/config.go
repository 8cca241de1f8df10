package kafka

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks"
)

// Type is the sink type as configuration files name it.
const Type = "kafka"

// Config is the keys only a Kafka sink has.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// Topic receives the records.
	Topic string    `yaml:"topic"`
	TLS   sinks.TLS `yaml:"tls"`
	SASL  SASL      `yaml:"sasl"`
}

// SASL authenticates to Kafka.
type SASL struct {
	// Mechanism is "" (none), plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is never shown; write it as ${VAR}.
	Password string `yaml:"password"`
}

// SASL mechanisms.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// SASLMechanisms lists the values of SASL.Mechanism.
var SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512}

// DefaultConfig returns the configuration of a Kafka sink whose file leaves out every key;
// brokers and topic have no default.
func DefaultConfig() *Config {
	return &Config{}
}

// Validate reports missing or malformed brokers and topic, SASL settings that do not fit
// together, and TLS keys that do not. It never echoes the password.
func (c *Config) Validate(check *config.SinkCheck) {
	if len(c.Brokers) == 0 {
		check.Errorf("brokers", "is missing; list at least one broker, e.g. [\"kafka-1:9092\"]")
	}
	for i, b := range c.Brokers {
		key := fmt.Sprintf("brokers[%d]", i)
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			check.Errorf(key, "%s is not a host:port address; write e.g. kafka-1:9092", check.Show(key, b))
		}
	}
	switch {
	case c.Topic == "":
		check.Errorf("topic", "is missing; name the topic the records go to, e.g. api-sessions")
	case !validTopic(c.Topic):
		check.Errorf("topic", "%s is not a valid Kafka topic name; use letters, digits, ., _ and - (at most 249)", check.Show("topic", c.Topic))
	}
	c.SASL.validate(check)
	c.TLS.Validate(check, "tls")
}

func (a SASL) validate(check *config.SinkCheck) {
	mechanisms := strings.Join(SASLMechanisms, ", ")
	switch {
	case a.Mechanism == "" && (a.Username != "" || a.Password != ""):
		check.Errorf("sasl.mechanism", "is missing while a username or password is set; use %s", mechanisms)
	case a.Mechanism != "" && !slices.Contains(SASLMechanisms, a.Mechanism):
		check.Errorf("sasl.mechanism", "%s is not a SASL mechanism; use %s", check.Show("sasl.mechanism", a.Mechanism), mechanisms)
	case a.Mechanism != "":
		if a.Username == "" {
			check.Errorf("sasl.username", "is missing; SASL %s needs a username", a.Mechanism)
		}
		if a.Password == "" {
			check.Errorf("sasl.password", "is missing; SASL %s needs a password, e.g. ${KAFKA_PASSWORD}", a.Mechanism)
		}
	}
}

// validTopic reports whether s is a legal Kafka topic name.
func validTopic(s string) bool {
	return s != "." && s != ".." && config.ValidName(s, 249)
}
