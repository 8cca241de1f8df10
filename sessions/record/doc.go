// Package record defines the records apisessions emits: one Request record per HTTP request and
// Session records that carry the state of one session part. Sinks depend on this package, not on
// the engine. Records are values: once emitted nobody mutates them; a sink that must change one
// copies it first.
//
// It imports nothing from apisessions.
package record
