package extract

import (
	"encoding/base64"
	"errors"
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

const (
	// MaxTokenBytes is the longest JWT (after "Bearer ") that is decoded. Real tokens are a
	// few hundred bytes to a few KiB; longer ones do not work.
	MaxTokenBytes = 16 << 10
	// maxDecodeBytes bounds a base64 or JSON value decoded from a header, cookie, query or
	// form field.
	maxDecodeBytes = 1 << 20
)

// Cache holds recomputable lookups (decoded, unverified JWT claims) in a ristretto cache
// keyed by a keyed hash of the token, never by the token. A miss means recompute.
// It is safe for concurrent use.
type Cache struct {
	store *ristretto.Cache[uint64, claimsEntry]
	// Two independent seeds: the key picks the slot, the check proves the slot holds this
	// token's claims. Only both colliding at once could mix two tokens up.
	keySeed, checkSeed maphash.Seed
	// hits and misses count lookups, for the cache's hit rate.
	hits, misses atomic.Uint64
}

// CacheStats are a Cache's lookup counts since NewCache.
type CacheStats struct {
	// Hits are lookups answered from the cache; Misses are lookups that decoded the token.
	Hits, Misses uint64
}

// Stats returns the cache's lookup counts.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// claimsEntry is immutable once stored: the claims are shared by every goroutine that hits.
type claimsEntry struct {
	check  uint64
	claims map[string]any
}

// NewCache returns a cache holding about maxBytes of decoded claims.
func NewCache(maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, errors.New("extract: cache size must be positive")
	}
	// ristretto wants about ten counters per item it may hold; a typical entry costs about
	// 1 KiB (see claimsCost).
	counters := min(max(maxBytes/100, 1<<10), 1<<24)
	store, err := ristretto.NewCache(&ristretto.Config[uint64, claimsEntry]{
		NumCounters: counters,
		MaxCost:     maxBytes,
		BufferItems: 64,
		// The key is already a uint64 hash; the conflict hash is our own check.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, err
	}
	return &Cache{store: store, keySeed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed()}, nil
}

// Close stops the cache's goroutines and drops its contents.
func (c *Cache) Close() { c.store.Close() }

// Wait blocks until the sets issued so far are applied (or refused). Sets are asynchronous;
// tests call Wait before expecting a hit.
func (c *Cache) Wait() { c.store.Wait() }

func (c *Cache) get(token string) (map[string]any, bool) {
	e, ok := c.store.Get(maphash.String(c.keySeed, token))
	if !ok || e.check != maphash.String(c.checkSeed, token) {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.claims, true
}

func (c *Cache) set(token string, claims map[string]any, payloadLen int) {
	c.store.Set(maphash.String(c.keySeed, token),
		claimsEntry{check: maphash.String(c.checkSeed, token), claims: claims},
		claimsCost(payloadLen))
}

// claimsCost approximates the memory of decoded claims from the JSON they came from: Go maps,
// interfaces and string headers take about three times the text, plus the entry itself.
func claimsCost(payloadLen int) int64 { return int64(3*payloadLen + 128) }

// UnverifiedClaims returns the payload of a JWT as a JSON object, WITHOUT checking its
// signature: the claims say what the client sent, not what an issuer vouched for. "Bearer "
// (any case) and surrounding spaces are stripped. The token needs at least two dot-separated
// segments, a base64url (padding and the standard alphabet tolerated) payload that is a JSON
// object, and at most MaxTokenBytes. The claims may be shared with other goroutines through
// the cache: treat them as read-only.
func (v *View) UnverifiedClaims(token string) (any, bool) {
	tok := stripBearer(token)
	if tok == "" || len(tok) > MaxTokenBytes || strings.IndexByte(tok, '.') < 0 {
		return nil, false
	}
	if v.haveLast && v.lastToken == tok {
		return v.lastClaims, v.lastOK
	}
	var claims map[string]any
	ok := false
	if v.cache != nil {
		claims, ok = v.cache.get(tok)
	}
	if !ok {
		var n int
		claims, n, ok = v.decodeClaims(tok)
		if ok && v.cache != nil {
			v.cache.set(tok, claims, n)
		}
		if !ok {
			v.parseError(ParseJWT)
		}
	}
	v.lastToken, v.haveLast, v.lastOK = tok, true, ok
	v.lastClaims = nil
	if ok {
		v.lastClaims = claims
		return claims, true
	}
	return nil, false
}

func stripBearer(s string) string {
	s = strings.TrimSpace(s)
	const bearer = "bearer "
	if len(s) >= len(bearer) && strings.EqualFold(s[:len(bearer)], bearer) {
		s = strings.TrimSpace(s[len(bearer):])
	}
	return s
}

// decodeClaims decodes the payload segment; it returns the payload's JSON length for the
// cache cost.
func (v *View) decodeClaims(tok string) (map[string]any, int, bool) {
	dot := strings.IndexByte(tok, '.')
	payload := tok[dot+1:]
	if i := strings.IndexByte(payload, '.'); i >= 0 {
		payload = payload[:i]
	}
	js, ok := v.decodeBase64Bytes(payload)
	if !ok || len(js) == 0 {
		return nil, 0, false
	}
	doc, ok := v.parse(js)
	if !ok {
		return nil, 0, false
	}
	claims, isObject := doc.(map[string]any)
	return claims, len(js), isObject
}

// decodeBase64Bytes decodes standard or URL base64, padded or not, into the View's scratch
// buffer; the result is valid until the next call.
func (v *View) decodeBase64Bytes(s string) ([]byte, bool) {
	s = strings.TrimRight(s, "=")
	if s == "" || len(s) > maxDecodeBytes {
		return nil, false
	}
	enc := base64.RawStdEncoding.DecodedLen(len(s))
	need := len(s) + enc
	if cap(v.scratch) < need {
		v.scratch = make([]byte, need)
	}
	buf := v.scratch[:need]
	src, dst := buf[:len(s)], buf[len(s):]
	// One alphabet: map the URL-safe characters onto the standard ones. Other bytes (and
	// "\r", "\n", which the decoder would skip) make the value invalid.
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '-':
			c = '+'
		case '_':
			c = '/'
		case '\r', '\n', '=':
			return nil, false
		}
		src[i] = c
	}
	n, err := base64.RawStdEncoding.Decode(dst, src)
	if err != nil {
		return nil, false
	}
	return dst[:n], true
}

// decodeBase64 implements decode: base64: the decoded bytes as JSON when they parse, else as
// a string.
func (v *View) decodeBase64(s string) (any, bool) {
	b, ok := v.decodeBase64Bytes(strings.TrimSpace(s))
	if !ok || len(b) == 0 {
		v.parseError(ParseBase64)
		return nil, false
	}
	if looksLikeJSON(b) {
		if doc, ok := v.parse(b); ok {
			return doc, true
		}
	}
	return string(b), true
}

// looksLikeJSON spares a parse of decoded text that cannot be JSON.
func looksLikeJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return true
		}
		return false
	}
	return false
}

// parseJSON implements decode: json.
func (v *View) parseJSON(s string) (any, bool) {
	if len(s) > maxDecodeBytes {
		v.parseError(ParseJSON)
		return nil, false
	}
	need := len(s)
	if cap(v.scratch) < need {
		v.scratch = make([]byte, need)
	}
	buf := append(v.scratch[:0], s...)
	doc, ok := v.parse(buf)
	if !ok {
		v.parseError(ParseJSON)
	}
	return doc, ok
}
