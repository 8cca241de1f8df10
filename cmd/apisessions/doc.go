// Command apisessions groups the API traffic Envoy sends it over ext_proc into user sessions.
// See the README; the whole program lives in // It imports only cmd/apisessions/app.
package app so tests can run it in-process.
package main
