package sessions

import (
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

// Labels of the keys derived from the hash key K, one per kind of hashed value
// (docs/records.md "Identity"). A session id and a hashed parameter of the same value come
// from different keys, so neither reveals the other: without the separation a session id was a
// prefix of the value's hashed form, and anyone who could choose a grouping value (any client)
// could confirm a guess of a hashed user name by comparing the two. Fallback parts have their
// own key so that no value, however crafted, collides with a fallback key (which would put an
// attacker's requests into another client's session).
const (
	sessionLabel  = "apisessions/session/v1"
	paramLabel    = "apisessions/param/v1"
	fallbackLabel = "apisessions/fallback/v1"
	// handoverLabel keys the sessions of a replayed export (traffic.Handover): no live value
	// can reach one.
	handoverLabel = "apisessions/handover/v1"
)

// hasher computes session ids and hashed parameter values. All are keyed HMAC-SHA256 so that
// every replica sharing the key agrees, and nobody without the key can test a guess.
//
// The exact forms, which replicas and stores rely on:
//
//	session id (value)    "s_" + hex(HMAC-SHA256(Ks, value)[:10]),  Ks = HMAC-SHA256(K, "apisessions/session/v1")
//	session id (fallback) "s_" + hex(HMAC-SHA256(Kf, join)[:10]),   Kf = HMAC-SHA256(K, "apisessions/fallback/v1"),
//	                      join = "<part>=<value>" for each part used, in configured order, joined by "\x00"
//	hashed parameter      "hmac:" + hex(HMAC-SHA256(Kp, value)[:16]), Kp = HMAC-SHA256(K, "apisessions/param/v1")
//	session id (handover) "s_" + hex(HMAC-SHA256(Kh, session+"/"+part)[:10]), Kh = HMAC-SHA256(K, "apisessions/handover/v1"),
//	                      session and part as an exported HAR names them
//
// The derived keys are computed once, by newHasher; K itself is not kept.
type hasher struct {
	sessionMACs  sync.Pool // of *mac keyed with Ks
	paramMACs    sync.Pool // of *mac keyed with Kp
	fallbackMACs sync.Pool // of *mac keyed with Kf
	handoverMACs sync.Pool // of *mac keyed with Kh
}

// mac is a pooled HMAC with the buffer its sum is written to: a sum written through the
// hash.Hash interface into a caller's array would move that array to the heap.
type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newHasher(key []byte) *hasher {
	ks, kp, kf := deriveKey(key, sessionLabel), deriveKey(key, paramLabel), deriveKey(key, fallbackLabel)
	kh := deriveKey(key, handoverLabel)
	return &hasher{
		sessionMACs:  sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, ks)} }},
		paramMACs:    sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, kp)} }},
		fallbackMACs: sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, kf)} }},
		handoverMACs: sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, kh)} }},
	}
}

// deriveKey is HMAC-SHA256(key, label): the key of one kind of hashed value.
func deriveKey(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
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
	return h.id(&h.sessionMACs, value)
}

// fallbackID returns the session id of a joined fallback key.
func (h *hasher) fallbackID(join string) string {
	return h.id(&h.fallbackMACs, join)
}

// handoverID returns the session id of an exported session part replayed (traffic.Handover).
func (h *hasher) handoverID(session, part string) string {
	return h.id(&h.handoverMACs, session+"/"+part)
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
	h.sum(&h.paramMACs, value, &sum)
	var buf [5 + 2*paramHashBytes]byte
	copy(buf[:], "hmac:")
	hex.Encode(buf[5:], sum[:paramHashBytes])
	return string(buf[:])
}

// stringBytes views s as bytes without copying, for hash writes that neither keep nor modify them.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
