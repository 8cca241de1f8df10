// Package jsonl is the sink that writes records as JSON lines, one record per line, to stdout or
// to a file that rotates at a size limit.
//
// A batch is written as whole lines: a line never straddles two files, and when a write fails
// the file is cut back to the last complete line, so a reader never meets half a record.
//
// It owns the keys of a jsonl sink (Config: path and rotation, their defaults and checks). It
// imports the sinks framework, the configuration schema and the record shape, nothing else of
// apisessions.
package jsonl
