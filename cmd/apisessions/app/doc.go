// Package app is the apisessions program: every command's flags, checks and output (serve,
// validate, replay, recommend, envoy-config, version), one configuration loader for all of
// them, the serve loop and its wiring. main only turns signals into a context and Run's result
// into an exit status, so tests and benchmarks start the whole server in-process with Run.
//
// It may import every apisessions package; none imports it.
package app
