// Package protomsg builds ext_proc ProcessingRequest messages shaped exactly as Envoy sends them,
// and plays them against a server like Envoy does. Unit tests, end-to-end tests, the load tool
// and extproc/remote (replay --to) share it, so every one of them speaks the same protocol.
//
// It imports the neutral traffic package and go-control-plane, never the sessions engine.
package protomsg
