// Package redact keeps the clear values of hashed parameters out of records. Given one
// exchange's secrets (the values its hashed parameters read, each with its hashed form), a
// Redactor replaces them wherever they occur, as sent or URL-, JSON- or base64-encoded, and
// hashes whole JWTs whose claims hold one: in record fields (path, user agent, request id) and
// in the request content that the record of a malicious request carries (headers, cookies,
// query, urlencoded and JSON bodies).
//
// It imports config and the engine's leaf packages (sessions/extract, sessions/record,
// sessions/traffic). It must not import the engine (sessions): the engine hands it the hash
// function and the places whose values are always hashed.
package redact
