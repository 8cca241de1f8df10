package config

import (
	"strings"
	"testing"
)

// The sink types of the tests of this package. The real ones live in the sink packages, which
// import config; these two exercise how config decodes and checks any type's keys.

// fileOptions stand for a sink type that writes a file.
type fileOptions struct {
	Path string `yaml:"path"`
	Keep int    `yaml:"keep"`
}

func (o *fileOptions) Validate(c *SinkCheck) {
	if o.Path == "" {
		c.Errorf("path", "is missing; write a file path")
	} else if other, taken := c.Claim("file " + o.Path); taken {
		c.Errorf("path", "is also the file of %s; give each sink its own file", other)
	}
	if o.Keep < 0 {
		c.Errorf("keep", "%d is negative; use 0 or more", o.Keep)
	}
}

// httpOptions stand for a sink type that posts to a URL with headers that may be secrets.
type httpOptions struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

func (o *httpOptions) Validate(c *SinkCheck) {
	if !strings.HasPrefix(o.URL, "https://") {
		c.Errorf("url", "%s is not an https URL; write e.g. https://siem.example.com/ingest", c.Show("url", o.URL))
	}
}

var testSinkTypes = []SinkType{
	{Name: "file", Options: func() SinkOptions { return &fileOptions{Keep: 3} }},
	{Name: "http", Options: func() SinkOptions { return &httpOptions{} }},
}

// TestSinkOptions checks what a sink's options hold after decoding: the type's defaults,
// what the file wrote over them, and, for the default sink, its type's defaults.
func TestSinkOptions(t *testing.T) {
	t.Parallel()
	c, err := parseAndValidate("s.yaml", []byte("sinks:\n  - {type: file, path: a}\n  - {type: file, path: b, keep: 0}\n"), envMap(nil), testSinkTypes)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sinks[0].Options.(*fileOptions); *got != (fileOptions{Path: "a", Keep: 3}) {
		t.Errorf("sink 0 options %+v: want path a and the default keep 3", got)
	}
	if got := c.Sinks[1].Options.(*fileOptions); *got != (fileOptions{Path: "b", Keep: 0}) {
		t.Errorf("sink 1 options %+v: want the written keep 0", got)
	}

	// The default sink is decoded from nothing: its type's defaults, when the type is known.
	types := append([]SinkType{{Name: DefaultSinkType, Options: func() SinkOptions { return &fileOptions{Path: "default"} }}}, testSinkTypes...)
	c, err = parseAndValidate("s.yaml", nil, envMap(nil), types)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Sinks[0].Options.(*fileOptions); !ok || got.Path != "default" {
		t.Errorf("default sink options %#v: want the type's defaults", c.Sinks[0].Options)
	}
	if c, _ := parse("s.yaml", nil, envMap(nil), testSinkTypes); c.Sinks[0].Options != nil {
		t.Errorf("default sink of an unknown type has options %#v, want none", c.Sinks[0].Options)
	}
}

// TestSinksWithoutTypes covers decoding without the program's sink types: the keys every
// sink has are decoded and checked, the others passed over, and nothing can be created from
// a sink whose keys were.
func TestSinksWithoutTypes(t *testing.T) {
	t.Parallel()
	c, err := parseAndValidate("s.yaml", []byte("sinks:\n  - {type: anything, whatever: [1], queue_size: 7}\n  - {type: store}\n"), envMap(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sinks[0]; s.QueueSize != 7 || s.BatchSize != DefaultBatchSize || s.Options != (skippedOptions{}) {
		t.Errorf("sink %+v: want queue_size 7, the other defaults and options marked as skipped", s)
	}
	if s := c.Sinks[1]; s.Options != nil {
		t.Errorf("sink %+v: a sink with no key of its type keeps nil options (its type's defaults)", s)
	}
	_, err = parseAndValidate("s.yaml", []byte("sinks:\n  - {type: x, queue_size: 0}\n"), envMap(nil), nil)
	want := []string{"s.yaml:2: sinks[0].queue_size: 0 is too small; use at least 1 (default 10000)"}
	if got := problemLines(t, err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems %q, want %q", got, want)
	}
}

// TestSinkCheckBuiltInCode covers sink options checked without a file: problems carry the key
// path only, and values are quoted.
func TestSinkCheckBuiltInCode(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Sinks = []Sink{DefaultSink("http"), DefaultSink("http")}
	c.Sinks[0].Options = &httpOptions{URL: "ftp://x"}
	c.Sinks[1].Options = &httpOptions{URL: "https://x"}
	c.Normalize()
	got := problemLines(t, c.Validate())
	want := []string{`sinks[0].url: "ftp://x" is not an https URL; write e.g. https://siem.example.com/ingest`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems %q, want %q", got, want)
	}
}
