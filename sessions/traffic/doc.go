// Package traffic defines Exchange, the neutral form of one HTTP request and its response as
// apisessions sees it. The ext_proc server fills it from Envoy's messages, sessions/traffic/recorded
// from recorded traffic; the sessions engine reads it. It imports nothing from apisessions, so
// the engine never depends on gRPC or Envoy's protos.
package traffic
