package config

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Sink is one destination of records: the keys every sink type has (its type, its name and how
// the pipeline delivers to it), and the keys only its type has in Options.
type Sink struct {
	Type string `yaml:"type"`
	// Name tells sinks of the same type apart in logs and metrics; defaults to the type.
	Name string `yaml:"name"`
	// Options are the keys only this sink's type has (a file path, a URL, brokers), decoded into
	// the configuration its package defines. Nil stands for the type's defaults (a sink built in
	// code, or the default sink of Default), which Validate cannot check: it knows no type.
	Options SinkOptions `yaml:"-"`

	// Delivery, every type.
	QueueSize     int      `yaml:"queue_size"`
	BatchSize     int      `yaml:"batch_size"`
	FlushInterval Duration `yaml:"flush_interval"`
	// Timeout bounds one write of a batch (one HTTP request, one produce).
	Timeout Duration `yaml:"timeout"`
	Retry   Retry    `yaml:"retry"`
	Spool   Spool    `yaml:"spool"`

	Line int `yaml:"-"`
}

// Retry says how a sink retries a batch its destination did not take.
type Retry struct {
	// InitialInterval is the ceiling of the first wait; each retry doubles it, with full jitter.
	InitialInterval Duration `yaml:"initial_interval"`
	// MaxInterval caps the wait.
	MaxInterval Duration `yaml:"max_interval"`
	// MaxElapsed gives up on a batch after retrying it this long; 0 never gives up (the spool
	// bounds what waits).
	MaxElapsed Duration `yaml:"max_elapsed"`
}

// Spool is the on-disk buffer for records a sink could not take yet.
type Spool struct {
	// MaxMB bounds the spool; when full the oldest records are dropped. 0 keeps no spool.
	MaxMB int `yaml:"max_mb"`
	// Dir defaults to <server.data_dir>/spool/<sink name>.
	Dir string `yaml:"dir"`
}

// Sink delivery defaults, applied to every sink whose file leaves the key out.
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 500
	DefaultFlushInterval = Duration(time.Second)
	DefaultSinkTimeout   = Duration(30 * time.Second)
	DefaultRetryInitial  = Duration(time.Second)
	DefaultRetryMax      = Duration(30 * time.Second)
	DefaultSpoolMaxMB    = 256
)

// DefaultSinkType is the type of the one sink a file without a sinks key gets: the embedded
// store behind the explore API and UI, in server.data_dir.
const DefaultSinkType = "store"

// DefaultSink returns a sink of type typ with the delivery defaults (queue, batch, timeout,
// retry, spool) and nil Options, which stand for its type's defaults. Name is left empty:
// Normalize derives it.
func DefaultSink(typ string) Sink {
	return Sink{
		Type:          typ,
		QueueSize:     DefaultQueueSize,
		BatchSize:     DefaultBatchSize,
		FlushInterval: DefaultFlushInterval,
		Timeout:       DefaultSinkTimeout,
		Retry:         Retry{InitialInterval: DefaultRetryInitial, MaxInterval: DefaultRetryMax},
		Spool:         Spool{MaxMB: DefaultSpoolMaxMB},
	}
}

// SinkOptions is the configuration of the keys only one sink type has: jsonl's path and
// rotation, a webhook's URL and headers, Kafka's brokers and topic. Each sink package defines
// its own as a pointer to a struct whose fields carry yaml tags; Parse decodes a sink's keys
// into it as strictly as the rest of the file (field types: text, booleans, whole numbers,
// Duration, lists, maps of text, and structs of those).
type SinkOptions interface {
	// Validate reports every problem of the options to c, without changing them.
	Validate(c *SinkCheck)
}

// SinkType tells Parse about one sink type: the name configuration files give it and the
// configuration of its own keys.
type SinkType struct {
	Name string
	// Options returns a fresh value with the type's defaults; a sink's keys are decoded into it.
	Options func() SinkOptions
}

// SinkCheck is what a sink type's Validate reports its problems to. Keys are relative to the
// sink ("path", "tls.key_file"); a problem is located where its key was written, else where
// the nearest enclosing key or the sink itself was. Messages follow the rest of the
// configuration's: what is wrong, then how to fix it; values appear only through Show.
type SinkCheck struct {
	v *validator
	// at is the sink's key path, "sinks[2]".
	at string
	// claims maps each resource a sink reserved to the path of the first sink that did.
	claims map[string]string
}

// Errorf reports a problem with key ("" for the sink itself).
func (c *SinkCheck) Errorf(key, format string, args ...any) {
	c.v.add(c.path(key), format, args...)
}

// Show quotes a value of key for a message, unless it came from the environment through
// ${VAR}: then it says so instead, so that a secret is never echoed.
func (c *SinkCheck) Show(key, value string) string {
	return c.v.show(c.path(key), value)
}

// Claim reserves resource (a file, "the store") for this sink. When an earlier sink reserved
// it, Claim returns that sink's key path ("sinks[0]") and true.
func (c *SinkCheck) Claim(resource string) (string, bool) {
	if other, ok := c.claims[resource]; ok {
		return other, true
	}
	c.claims[resource] = c.at
	return "", false
}

func (c *SinkCheck) path(key string) string {
	if key == "" {
		return c.at
	}
	return c.at + "." + key
}

// sinks checks the keys every sink has, then hands each sink's options to their Validate.
// That the type is one of the build's is checked while decoding, where the types are known.
func (v *validator) sinks() {
	c := v.c
	if len(c.Sinks) == 0 {
		v.add("sinks", "no sink is configured, so records go nowhere; add one, e.g. - {type: jsonl, path: \"-\"}")
	}
	names := map[string]int{}
	claims := map[string]string{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		at := fmt.Sprintf("sinks[%d]", i)
		if !ValidName(s.Name, 64) {
			v.add(at+".name", "%s is not a valid sink name; use letters, digits, ., _ and - (at most 64): it labels logs and metrics", v.show(at+".name", s.Name))
		} else if j, dup := names[s.Name]; dup {
			v.add(at+".name", "%q is already the name of sinks[%d]; give each sink its own name", s.Name, j)
		} else {
			names[s.Name] = i
		}
		if s.QueueSize < 1 {
			v.add(at+".queue_size", "%d is too small; use at least 1 (default %d)", s.QueueSize, DefaultQueueSize)
		}
		if s.BatchSize < 1 {
			v.add(at+".batch_size", "%d is too small; use at least 1 (default %d)", s.BatchSize, DefaultBatchSize)
		}
		if s.FlushInterval <= 0 {
			v.add(at+".flush_interval", "%s is not more than 0; use a duration such as %s", s.FlushInterval, DefaultFlushInterval)
		}
		check := &SinkCheck{v: v, at: at, claims: claims}
		v.delivery(s, check)
		if s.Options != nil {
			s.Options.Validate(check)
		}
	}
}

// delivery checks the timeout, retry and spool keys every sink type has.
func (v *validator) delivery(s *Sink, c *SinkCheck) {
	if s.Timeout <= 0 {
		c.Errorf("timeout", "%s is not more than 0; use a duration such as %s", s.Timeout, DefaultSinkTimeout)
	}
	r := s.Retry
	if r.InitialInterval <= 0 {
		c.Errorf("retry.initial_interval", "%s is not more than 0; use a duration such as %s", r.InitialInterval, DefaultRetryInitial)
	}
	if r.MaxInterval < r.InitialInterval {
		c.Errorf("retry.max_interval", "%s is less than initial_interval (%s); use at least that, e.g. %s", r.MaxInterval, r.InitialInterval, DefaultRetryMax)
	}
	if r.MaxElapsed < 0 {
		c.Errorf("retry.max_elapsed", "%s is negative; use 0 (retry until delivered) or a duration such as 1h", r.MaxElapsed)
	}
	if s.Spool.MaxMB < 0 {
		c.Errorf("spool.max_mb", "%d is negative; use 0 (no spool) or a size in MiB (default %d)", s.Spool.MaxMB, DefaultSpoolMaxMB)
	}
	if d := s.Spool.Dir; d != "" {
		if other, taken := c.Claim("spool " + path.Clean(d)); taken {
			c.Errorf("spool.dir", "is also the spool of %s; give each sink its own directory", other)
		}
	}
}

// ValidName reports whether s has 1 to max characters from [A-Za-z0-9._-]: the syntax of sink
// names (at most 64) and Kafka topics (at most 249).
func ValidName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidToken reports whether s is an RFC 9110 token: the syntax of header names, HTTP
// methods and cookie names.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
