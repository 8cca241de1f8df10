// Package redact keeps secrets out of records. Given one exchange's secrets (the values its
// hashed parameters read, each with its hashed form), a Redactor replaces them wherever they
// occur — as sent or in any case, percent-escaped once or more (upper- or lower-case hex),
// JSON-escaped, base64-encoded at any alignment (Basic credentials included) — and hashes
// whole JWTs whose claims hold one: in record fields (host, path, user agent, request id) and
// in the request content that the record of a malicious request carries (headers and their
// names, cookies, query, urlencoded, multipart and JSON bodies).
//
// For a malicious request it also hides what nobody configured: the values of well-known
// secret fields (Names, attacks.scrub_fields) and credentials, which it learns from the
// request (Learn) so that their copies elsewhere are hidden too, and the values of fields
// found by name in a body cut at max_body_bytes or too broken to parse, even when the cut fell
// inside the value. MayHold is the allocation-free check that lets ordinary records skip all
// of this when no field can hold a secret.
//
// It imports config and the engine's leaf packages (sessions/extract, sessions/record,
// sessions/traffic). It must not import the engine (sessions): the engine hands it the hash
// function and the places whose values are always hashed.
package redact
