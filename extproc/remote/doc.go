// Package remote sends recorded exchanges to a running apisessions as ext_proc streams, the
// way Envoy would in inline mode, and reads back the session part the server named in its
// answers' dynamic metadata. It is the client side of "apisessions replay --to".
//
// It lives under extproc because it speaks gRPC and reads the metadata extproc writes; it
// imports extproc, extproc/protomsg and the traffic and record shapes, and must not import
// the sessions engine or any command.
package remote
