package sessions

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
)

// MinHashKeyBytes is the shortest hash key accepted from a file or the environment.
const MinHashKeyBytes = 32

// HashKeyEnv is the environment variable that may hold the hash key.
const HashKeyEnv = "APISESSIONS_HASH_KEY"

// hashKeyFile is the file in the data directory that keeps a generated key.
const hashKeyFile = "hash.key"

// ErrHashKey is wrapped by every error about an unusable hash key.
var ErrHashKey = errors.New("unusable hash key")

// Where the hash key came from, for the startup log line.
const (
	keyFromFile      = "key_file"
	keyFromEnv       = "env"
	keyFromDataDir   = "data_dir"
	keyFromGenerated = "generated"
)

// hashKey finds the HMAC key and says where it came from (never what it is).
func hashKey(keyFile, dataDir string, getenv func(string) string) ([]byte, string, error) {
	if keyFile != "" {
		k, err := readKeyFile(keyFile, true)
		return k, keyFromFile, err
	}
	if getenv(HashKeyEnv) != "" {
		k, err := loadHashKey("", dataDir, getenv)
		return k, keyFromEnv, err
	}
	path := filepath.Join(cmp.Or(dataDir, "."), hashKeyFile)
	_, statErr := os.Stat(path)
	k, err := loadHashKey("", dataDir, getenv)
	if errors.Is(statErr, fs.ErrNotExist) {
		return k, keyFromGenerated, err
	}
	return k, keyFromDataDir, err
}

// loadHashKey finds the HMAC key: the configured key file, else the environment, else a key
// generated once and kept in dataDir. Errors name the source and never contain key bytes.
func loadHashKey(keyFile, dataDir string, getenv func(string) string) ([]byte, error) {
	if keyFile != "" {
		return readKeyFile(keyFile, true)
	}
	if v := getenv(HashKeyEnv); v != "" {
		k := trimNewline([]byte(v))
		if len(k) < MinHashKeyBytes {
			return nil, fmt.Errorf("%w: %s holds %d bytes; use at least %d (e.g. openssl rand -hex 32)",
				ErrHashKey, HashKeyEnv, len(k), MinHashKeyBytes)
		}
		return k, nil
	}
	dataDir = cmp.Or(dataDir, ".")
	path := filepath.Join(dataDir, hashKeyFile)
	k, err := readKeyFile(path, false)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return generateKeyFile(dataDir, path)
}

// readKeyFile reads a key file that only its owner may read. Generated files get the same
// check so a key left world-readable by a careless copy is refused rather than trusted.
func readKeyFile(path string, configured bool) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if !configured && errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: read key file %s: %w", ErrHashKey, path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %04o and is readable by others; run chmod 600 %s",
			ErrHashKey, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read key file %s: %w", ErrHashKey, path, err)
	}
	k := trimNewline(b)
	if len(k) < MinHashKeyBytes {
		return nil, fmt.Errorf("%w: key file %s holds %d bytes; use at least %d (e.g. openssl rand -hex 32 > %s)",
			ErrHashKey, path, len(k), MinHashKeyBytes, path)
	}
	return k, nil
}

func generateKeyFile(dataDir, path string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create data directory %s: %w", ErrHashKey, dataDir, err)
	}
	k := make([]byte, MinHashKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("%w: generate key: %w", ErrHashKey, err)
	}
	// O_EXCL: when two processes start at once on one data directory, the loser reads the
	// winner's key instead of overwriting it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKeyFile(path, true)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: create key file %s: %w", ErrHashKey, path, err)
	}
	_, werr := f.Write(k)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("%w: write key file %s: %w", ErrHashKey, path, werr)
	}
	return k, nil
}

func trimNewline(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return b[:len(b)-2]
	}
	if bytes.HasSuffix(b, []byte("\n")) {
		return b[:len(b)-1]
	}
	return b
}

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
