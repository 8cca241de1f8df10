package app

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
)

// hashKeyEnv is the environment variable that may hold the hash key.
const hashKeyEnv = "APISESSIONS_HASH_KEY"

// hashKeyFile is the file in the data directory that keeps a generated key.
const hashKeyFile = "hash.key"

// defaultDataDir is the data directory when neither server.data_dir nor --data-dir names one.
const defaultDataDir = "data"

// Where the hash key came from, for the ready line.
const (
	keyFromFile      = "key_file"
	keyFromEnv       = "env"
	keyFromDataDir   = "data_dir"
	keyFromGenerated = "generated"
)

// hashKey finds the HMAC key the sessions engine hashes with, for cfg: hashing.key_file, else
// the environment, else <data dir>/hash.key, generated there on first start. source says where
// it came from, never what it is.
func hashKey(cfg *config.Config) (key []byte, source string, err error) {
	return loadHashKey(cfg.Hashing.KeyFile, cmp.Or(cfg.Server.DataDir, defaultDataDir), os.Getenv)
}

// loadHashKey is hashKey with its inputs spelled out. Errors wrap sessions.ErrHashKey, name the
// source and the fix, and never contain key bytes.
func loadHashKey(keyFile, dataDir string, getenv func(string) string) ([]byte, string, error) {
	return findHashKey(keyFile, dataDir, getenv, true)
}

// findHashKey is loadHashKey; without generate, a key file the data directory does not hold
// yet is no error and no key (validate: serve would generate it).
func findHashKey(keyFile, dataDir string, getenv func(string) string, generate bool) ([]byte, string, error) {
	if keyFile != "" {
		k, err := readKeyFile(keyFile, true)
		return k, keyFromFile, err
	}
	if v := getenv(hashKeyEnv); v != "" {
		k := trimNewline([]byte(v))
		if len(k) < sessions.MinHashKeyBytes {
			return nil, keyFromEnv, fmt.Errorf("%w: %s holds %d bytes; use at least %d (e.g. openssl rand -hex 32)",
				sessions.ErrHashKey, hashKeyEnv, len(k), sessions.MinHashKeyBytes)
		}
		return k, keyFromEnv, nil
	}
	path := filepath.Join(dataDir, hashKeyFile)
	k, err := readKeyFile(path, false)
	if err == nil {
		return k, keyFromDataDir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, keyFromDataDir, err
	}
	if !generate {
		return nil, keyFromGenerated, nil
	}
	k, err = generateKeyFile(dataDir, path)
	return k, keyFromGenerated, err
}

// readKeyFile reads a key file that only its owner may read. Generated files get the same
// check so a key left world-readable by a careless copy is refused rather than trusted. A
// missing file that is not configured is reported as fs.ErrNotExist, for the caller to
// generate it.
func readKeyFile(path string, configured bool) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if !configured && errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: read key file %s: %w", sessions.ErrHashKey, path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %04o and is readable by others; run chmod 600 %s",
			sessions.ErrHashKey, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read key file %s: %w", sessions.ErrHashKey, path, err)
	}
	k := trimNewline(b)
	if len(k) < sessions.MinHashKeyBytes {
		return nil, fmt.Errorf("%w: key file %s holds %d bytes; use at least %d (e.g. openssl rand -hex 32 > %s)",
			sessions.ErrHashKey, path, len(k), sessions.MinHashKeyBytes, path)
	}
	return k, nil
}

// generateKeyFile writes a new random key to path (mode 0600, its directory 0700).
func generateKeyFile(dataDir, path string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create data directory %s: %w", sessions.ErrHashKey, dataDir, err)
	}
	// The key is the hex text of 32 random bytes, as openssl rand -hex 32 writes it: raw bytes
	// that happened to end in a line break would lose it when read back (trimNewline), which
	// would change the key, or make it too short, at the next start.
	raw := make([]byte, sessions.MinHashKeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("%w: generate key: %w", sessions.ErrHashKey, err)
	}
	k := []byte(hex.EncodeToString(raw))
	// The key is written whole to a file of its own, then linked to its name: link fails when
	// the name exists, so when two processes start at once on one data directory the loser
	// reads the winner's key, complete, instead of overwriting it or reading it half-written.
	tmp, err := os.CreateTemp(dataDir, ".hash.key-*")
	if err != nil {
		return nil, fmt.Errorf("%w: create key file in %s: %w", sessions.ErrHashKey, dataDir, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(k)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("%w: write key file %s: %w", sessions.ErrHashKey, path, werr)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readKeyFile(path, true)
	} else if err != nil {
		return nil, fmt.Errorf("%w: create key file %s: %w", sessions.ErrHashKey, path, err)
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
