package testutil

import (
	"context"
	"encoding/base64"

	"github.com/apisessions/apisessions/sessions/record"
)

// jwtHeader is the header of every token JWT builds, base64url-encoded.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// JWT returns a token shaped as clients send one: an HS256 header, claims (JSON text, or
// anything else a test wants to feed the decoder) as the payload in base64url without
// padding, and a signature. apisessions reads claims without verifying tokens, so the
// signature is a fixed placeholder and tests need no key.
func JWT(claims string) string { return JWTEncoded(claims, base64.RawURLEncoding) }

// JWTEncoded is JWT with the payload in enc, for tokens that pad or use the standard alphabet.
func JWTEncoded(claims string, enc *base64.Encoding) string {
	return jwtHeader + "." + enc.EncodeToString([]byte(claims)) + ".c2lnbmF0dXJl"
}

// DiscardSink is a sink (sinks.Sink) that accepts every batch and keeps nothing, for measuring
// the pipeline or the engine without an encoder or any I/O.
type DiscardSink struct{}

// Write drops batch.
func (DiscardSink) Write(context.Context, []record.Record) error { return nil }

// Close has nothing to release.
func (DiscardSink) Close(context.Context) error { return nil }
