// Package extract reads parameter values out of one traffic.Exchange: headers, cookies,
// set-cookie, query strings, urlencoded forms, JSON bodies (ojg JSONPath), path captures, and
// decoded values (JWT payloads, JSON, base64). Every input is attacker-written: nothing here
// panics, allocates without bound or echoes a value into an error.
//
// It imports config (and config/pathpattern), sessions/traffic and internal/jsonstr only; never
// the engine, a sink or gRPC.
package extract
