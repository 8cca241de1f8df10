// Command apisessions groups the API traffic Envoy sends it over ext_proc into user sessions.
// See the README; the whole program lives in package app so tests can run it in-process.
//
// It imports only cmd/apisessions/app.
package main
