// Package noop is the smallest correct ext_proc server: it answers CONTINUE to every message
// and records nothing. It is the baseline that benchmarks and the load tool compare the real
// server against, so it does only what the protocol demands.
//
// It imports go-control-plane's ext_proc service and gRPC's status codes, nothing of apisessions.
package noop
