// Package envoy renders and validates the Envoy configuration that attaches apisessions to an
// API: complete bootstraps for observability ("send and go") and inline mode, the shipped
// examples (also as Kubernetes resources for Envoy Gateway and Istio), and a validator that
// checks a bootstrap as deeply as possible without an Envoy binary.
//
// It imports the config package for the schema it renders from, and sessions only for the
// names of the built-in grouping keys (replica affinity); nothing in the request path imports it.
package envoy
