// Package jsonstr writes Go strings as JSON strings, for the encoders that build JSON by hand
// (records, extracted values) instead of through encoding/json's reflection.
// It imports nothing of apisessions.
package jsonstr
