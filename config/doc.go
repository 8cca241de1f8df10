// Package config defines the apisessions YAML configuration: the schema users write, its
// defaults, strict decoding with source positions, normalisation, and validation that
// reports every problem. Reading a file takes three steps: Parse decodes it over Default
// (unknown keys refused with the closest known one, every problem located by file and line),
// Normalize puts the values into canonical form, Validate checks them without changing them;
// ParseAndValidate runs all three and reports their problems together.
//
// Sinks are described in two parts. The keys every sink has (type, name, queue, batch,
// timeout, retry, spool) are Sink's and checked here. The keys only one sink type has belong
// to the package of that type, which defines them as SinkOptions with their defaults and
// Validate; the program passes its sink types (SinkType) to Parse, which decodes each sink's
// own keys into its type's options as strictly, and with the same messages, as the rest of
// the file.
//
// It imports no other apisessions package and holds nothing compiled: the sessions engine
// compiles a validated Config into matchers and extractors, the sink packages their options
// into sinks.
package config
