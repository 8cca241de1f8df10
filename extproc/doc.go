// Package extproc is the Envoy ext_proc gRPC service of apisessions: the per-stream loop that
// answers Envoy's messages, decodes them from the wire, turns them into a neutral
// traffic.Exchange and hands every finished exchange to a Processor (the sessions engine). In
// inline mode it also adds the session header and, when configured or asked for
// (AnswerMetadataKey), the "apisessions" dynamic metadata, and asks Envoy for the bodies the
// processor reads (mode_override). It bounds what streams hold (limits.go): streams open at
// once, how long one may stay idle, and the body bytes all of them keep.
//
// Its contract with the rest of the program is small: the Processor interface it consumes,
// Settings, the Stats counters and the typed Phase that the metrics package reads, and the
// gRPC server it builds. It imports sessions/traffic and sessions/record, never the sessions
// engine package itself; it is the only package that speaks gRPC.
package extproc
