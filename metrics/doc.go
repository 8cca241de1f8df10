// Package metrics is the Prometheus side of apisessions: one registry per process (never the
// global one, so tests and in-process servers do not share counters), collectors that read
// the components' Stats() at scrape time, and histograms fed on the stream path.
//
// Reading Stats() at scrape time keeps the hot path free of metric calls: the components
// already count with atomics, and a scrape is a handful of atomic loads. Labels are fixed
// sets (phases, modes, outcomes, sink names from the configuration); nothing derived from
// traffic ever becomes a label or a value.
//
// It imports extproc, sessions and sinks for their Stats types (and extproc's Phase, whose
// String is the phase label); none of them may import it, only cmd does.
package metrics
