package sessions

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
	"unsafe"
)

// MinHashKeyBytes is the shortest hash key the engine accepts.
const MinHashKeyBytes = 32

// ErrHashKey is wrapped by every error about an unusable hash key.
var ErrHashKey = errors.New("unusable hash key")

// Lengths of the hashed forms, in bytes of HMAC output.
const (
	sessionIDBytes = 10
	paramHashBytes = 16
)

// fallbackLabel derives the key under which fallback parts are hashed. Hashing them under a
// different key than grouping values means no value, however crafted, can collide with a
// fallback key (which would put an attacker's requests into another client's session).
const fallbackLabel = "apisessions/fallback/v1"

// hasher computes session ids and hashed parameter values. Both are keyed HMAC-SHA256 so that
// every replica sharing the key agrees, and nobody without the key can test a guess.
//
// The exact forms, which replicas and stores rely on:
//
//	session id (value)    "s_" + hex(HMAC-SHA256(K, value)[:10])
//	session id (fallback) "s_" + hex(HMAC-SHA256(Kf, join)[:10]),
//	                      Kf = HMAC-SHA256(K, "apisessions/fallback/v1"),
//	                      join = "<part>=<value>" for each part used, in configured order, joined by "\x00"
//	hashed parameter      "hmac:" + hex(HMAC-SHA256(K, value)[:16])
type hasher struct {
	value    sync.Pool // of *mac keyed with K
	fallback sync.Pool // of *mac keyed with Kf
}

// mac is a pooled HMAC with the buffer its sum is written to: a sum written through the
// hash.Hash interface into a caller's array would move that array to the heap.
type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newHasher(key []byte) *hasher {
	k := bytes.Clone(key)
	m := hmac.New(sha256.New, k)
	m.Write([]byte(fallbackLabel))
	kf := m.Sum(nil)
	return &hasher{
		value:    sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, k)} }},
		fallback: sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, kf)} }},
	}
}

func (h *hasher) sum(pool *sync.Pool, s string, out *[sha256.Size]byte) {
	m := pool.Get().(*mac)
	m.h.Reset()
	// io.WriteString would convert through []byte anyway; hash.Hash has no WriteString.
	m.h.Write(stringBytes(s))
	m.h.Sum(m.sum[:0])
	*out = m.sum
	pool.Put(m)
}

// sessionID returns the session id of a grouping value.
func (h *hasher) sessionID(value string) string {
	return h.id(&h.value, value)
}

// fallbackID returns the session id of a joined fallback key.
func (h *hasher) fallbackID(join string) string {
	return h.id(&h.fallback, join)
}

func (h *hasher) id(pool *sync.Pool, s string) string {
	var sum [sha256.Size]byte
	h.sum(pool, s, &sum)
	var buf [2 + 2*sessionIDBytes]byte
	buf[0], buf[1] = 's', '_'
	hex.Encode(buf[2:], sum[:sessionIDBytes])
	return string(buf[:])
}

// param returns the exported form of a hashed parameter value.
func (h *hasher) param(value string) string {
	var sum [sha256.Size]byte
	h.sum(&h.value, value, &sum)
	return paramForm(&sum)
}

// sessionAndParam returns both forms of a value that groups the request and is exported
// hashed: they share one HMAC.
func (h *hasher) sessionAndParam(value string) (id, hashed string) {
	var sum [sha256.Size]byte
	h.sum(&h.value, value, &sum)
	var buf [2 + 2*sessionIDBytes]byte
	buf[0], buf[1] = 's', '_'
	hex.Encode(buf[2:], sum[:sessionIDBytes])
	return string(buf[:]), paramForm(&sum)
}

func paramForm(sum *[sha256.Size]byte) string {
	var buf [5 + 2*paramHashBytes]byte
	copy(buf[:], "hmac:")
	hex.Encode(buf[5:], sum[:paramHashBytes])
	return string(buf[:])
}

// stringBytes views s as bytes without copying, for hash writes that neither keep nor modify them.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
